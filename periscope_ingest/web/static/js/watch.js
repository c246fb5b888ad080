// Watch: plays a channel's live stream, shows how far behind live the player is, and when the
// broadcast ends says so and links its replay. While the channel is offline it waits for it.
import { CHANNEL_RE, api, attachPlayer, el, liveFor, pathParam, resolution, setText, startPage } from "./common.js";

const POLL_MS = 5_000;
const BEHIND_WARN_S = 15;

const channel = pathParam(CHANNEL_RE);
const video = document.getElementById("video");
const message = document.getElementById("message");
const badge = document.getElementById("live-badge");
const latencyNode = document.getElementById("latency");
const goLive = document.getElementById("go-live");

let player = null;
let stream = null; // the /api/streams entry being watched
let state = "loading"; // loading | offline | live | ending | ended | failed

function say(kind, ...content) {
  message.className = `notice ${kind}`;
  message.replaceChildren(...content);
  message.hidden = content.length === 0;
}

async function findStream() {
  const { streams } = await api("/api/streams");
  return streams.find((s) => s.channel === channel) || null;
}

async function newestBroadcast() {
  const { broadcasts } = await api(`/api/broadcasts?channel=${encodeURIComponent(channel)}&limit=1`);
  return broadcasts[0] || null;
}

function replayLink(id, text) {
  return el("a", { href: `/replays/${encodeURIComponent(id)}`, id: "replay-link" }, text);
}

function play(found) {
  stream = found;
  state = "live";
  document.body.dataset.state = state;
  say("");
  badge.hidden = false;
  setText("since", liveFor(found.started_at));
  setText("details", [resolution(found), found.video_codec].filter(Boolean).join(" · "));
  player = attachPlayer(video, found.playlist, {
    live: true,
    onEndList: () => {
      if (state === "live") {
        state = "ending";
        document.body.dataset.state = state;
        say("ended", "The broadcast has ended; playing the last seconds.");
      }
    },
    onEnded: () => ended(),
    onFatal: (text) => {
      if (state === "ended") return;
      state = "failed";
      document.body.dataset.state = state;
      say("error", text);
    },
  });
  document.body.dataset.player = player.kind || "none";
  watchForEnd(found.broadcast_id);
}

// The player sees the end (ENDLIST, then "ended") unless it is paused or stalled: the API is the
// other witness. Gone from /api/streams and not ended after a while: say it has ended anyway.
function watchForEnd(broadcastId) {
  let goneSince = null;
  const timer = setInterval(async () => {
    if (state !== "live" && state !== "ending") {
      clearInterval(timer);
      return;
    }
    const found = await findStream().catch(() => undefined);
    if (found === undefined) return; // server unreachable: no conclusion
    if (found && found.broadcast_id === broadcastId) {
      goneSince = null;
      return;
    }
    goneSince = goneSince || Date.now();
    if (video.paused || Date.now() - goneSince > 30_000) {
      clearInterval(timer);
      ended();
    }
  }, POLL_MS);
}

async function ended() {
  if (state === "ended") return;
  state = "ended";
  document.body.dataset.state = state;
  badge.hidden = true;
  latencyNode.hidden = true;
  goLive.hidden = true;
  document.getElementById("since").hidden = true;
  let id = stream && stream.broadcast_id;
  if (!id) {
    const newest = await newestBroadcast().catch(() => null);
    id = newest && newest.id;
  }
  say(
    "ended",
    el("strong", {}, `${channel}'s broadcast has ended. `),
    id ? replayLink(id, "Watch the replay") : "The replay will be on the channel page.",
  );
  waitForNextBroadcast(stream && stream.broadcast_id);
}

async function offline() {
  state = "offline";
  document.body.dataset.state = state;
  const newest = await newestBroadcast().catch(() => null);
  say(
    "",
    el("strong", {}, `${channel} is not live right now. `),
    "This page starts playing when the broadcast begins. ",
    newest && newest.status !== "live" ? replayLink(newest.id, "Watch the latest replay") : "",
  );
  waitForNextBroadcast(null);
}

// Offline or ended: look every few seconds for a (new) broadcast on this channel.
function waitForNextBroadcast(previousId) {
  const timer = setInterval(async () => {
    if (document.hidden) return;
    const found = await findStream().catch(() => null);
    if (!found || found.broadcast_id === previousId) return;
    clearInterval(timer);
    if (player) player.destroy();
    play(found);
  }, POLL_MS);
}

function showLatency() {
  if (state === "live" && player) {
    const behind = player.latency();
    if (behind !== null) {
      latencyNode.hidden = false;
      latencyNode.textContent = `${behind.toFixed(1)} s behind live`;
      latencyNode.dataset.seconds = behind.toFixed(2);
      latencyNode.className = behind > BEHIND_WARN_S ? "badge behind" : "muted";
      goLive.hidden = behind <= BEHIND_WARN_S;
    }
    if (stream) setText("since", liveFor(stream.started_at));
  }
}

goLive.addEventListener("click", () => {
  if (!player) return;
  if (player.hls && typeof player.hls.liveSyncPosition === "number") {
    video.currentTime = player.hls.liveSyncPosition;
  } else if (video.seekable.length) {
    video.currentTime = Math.max(0, video.seekable.end(video.seekable.length - 1) - 6);
  }
  video.play().catch(() => {});
});

async function main() {
  startPage();
  if (!channel) {
    say("error", "This is not a channel name.");
    return;
  }
  document.title = `${channel} · Watch live · periscope-ingest`;
  setText("title", channel);
  document.getElementById("channel-link").href = `/channels/${encodeURIComponent(channel)}`;
  try {
    const found = await findStream();
    if (found) play(found);
    else await offline();
  } catch (error) {
    say("error", `Could not reach the server (${error.message}). Reload the page to try again.`);
  }
  setInterval(showLatency, 500);
}

main();
