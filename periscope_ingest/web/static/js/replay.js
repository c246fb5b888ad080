// Replay: plays a recording with seeking, downloads it as MP4, or downloads a clip of it.
import {
  BROADCAST_RE,
  ApiError,
  api,
  attachPlayer,
  el,
  formatBytes,
  formatDate,
  formatDuration,
  pathParam,
  resolution,
  setText,
  startPage,
} from "./common.js";

const id = pathParam(BROADCAST_RE);
const video = document.getElementById("video");
const message = document.getElementById("message");
const startInput = document.getElementById("clip-start");
const endInput = document.getElementById("clip-end");
const clipLink = document.getElementById("clip-link");
const clipError = document.getElementById("clip-error");
let broadcast = null;

function say(kind, ...content) {
  message.className = `notice ${kind}`;
  message.replaceChildren(...content);
  message.hidden = content.length === 0;
}

// "90", "90.5", "1:30", "1:02:03" -> seconds; anything else -> NaN.
export function parseTime(text) {
  const value = text.trim();
  if (value === "") return NaN;
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value);
  const match = /^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$/.exec(value);
  if (!match) return NaN;
  const [, h, m, s] = match;
  if (Number(s) >= 60 || (h !== undefined && Number(m) >= 60)) return NaN;
  return Number(h || 0) * 3600 + Number(m) * 60 + Number(s);
}

function clipTime(seconds) {
  return formatDuration(Math.floor(seconds)) + (seconds % 1 ? (seconds % 1).toFixed(1).slice(1) : "");
}

function updateClip() {
  const start = parseTime(startInput.value);
  const end = parseTime(endInput.value);
  const duration = broadcast && broadcast.status !== "live" ? broadcast.duration : Infinity;
  let problem = "";
  if (isNaN(start)) problem = "Start: a time such as 1:30 or 90.";
  else if (isNaN(end)) problem = "End: a time such as 2:00 or 120.";
  else if (end <= start) problem = "The end must be after the start.";
  else if (start >= duration) problem = `The start must be before the end of the broadcast (${formatDuration(duration)}).`;
  clipError.textContent = problem;
  clipError.hidden = !problem;
  startInput.setAttribute("aria-invalid", String(!!problem && (isNaN(start) || start >= duration)));
  endInput.setAttribute("aria-invalid", String(!!problem && !isNaN(start) && (isNaN(end) || end <= start)));
  if (problem || !broadcast) {
    clipLink.removeAttribute("href");
    clipLink.setAttribute("aria-disabled", "true");
    clipLink.textContent = "Download clip";
    return;
  }
  const endSeconds = Math.min(end, duration);
  clipLink.href = `${broadcast.mp4}?start=${start}&end=${Number(endSeconds.toFixed(3))}`;
  clipLink.removeAttribute("aria-disabled");
  clipLink.textContent = `Download clip (${formatDuration(endSeconds - start)})`;
}

function showBroadcast(b) {
  broadcast = b;
  const title = b.title || `${b.channel}, ${formatDate(b.started_at)}`;
  document.title = `${title} · Replay · periscope-ingest`;
  setText("title", title);
  document.getElementById("subtitle").replaceChildren(
    "Channel: ",
    el("a", { href: `/channels/${encodeURIComponent(b.channel)}` }, b.channel),
    b.status === "interrupted" ? " · the connection was lost before the end" : "",
  );
  setText("fact-date", formatDate(b.started_at));
  setText("fact-duration", b.status === "live" ? "still live" : formatDuration(b.duration));
  setText("fact-size", formatBytes(b.mp4_size ?? b.size));
  setText(
    "fact-video",
    [resolution(b), b.frame_rate ? `${Math.round(b.frame_rate)} fps` : "", b.video_codec, b.audio_codec]
      .filter(Boolean)
      .join(" · ") || "–",
  );
  const download = document.getElementById("download");
  download.href = b.mp4;
  download.textContent = b.mp4_size ? `Download MP4 (${formatBytes(b.mp4_size)})` : "Download MP4";
  if (b.status === "live") {
    say(
      "",
      el("strong", {}, "This broadcast is still live. "),
      el("a", { href: `/watch/${encodeURIComponent(b.channel)}` }, "Watch it live"),
      " or play what has been recorded so far.",
    );
  }
  if (!endInput.value) endInput.value = formatDuration(Math.min(b.duration || 30, 30));
  updateClip();
}

function setFromPlayer(input) {
  input.value = clipTime(Math.floor(video.currentTime * 10) / 10);
  updateClip();
  input.focus();
}

async function main() {
  startPage();
  if (!id) {
    say("error", "This is not a broadcast id.");
    return;
  }
  startInput.addEventListener("input", updateClip);
  endInput.addEventListener("input", updateClip);
  document.getElementById("clip-start-now").addEventListener("click", () => setFromPlayer(startInput));
  document.getElementById("clip-end-now").addEventListener("click", () => setFromPlayer(endInput));
  clipLink.addEventListener("click", (event) => {
    if (clipLink.getAttribute("aria-disabled") === "true") event.preventDefault();
  });
  document.getElementById("clip-form").addEventListener("submit", (event) => {
    event.preventDefault();
    updateClip();
    if (clipLink.getAttribute("aria-disabled") !== "true") clipLink.click();
  });
  let b;
  try {
    b = await api(`/api/broadcasts/${encodeURIComponent(id)}`);
  } catch (error) {
    const gone = error instanceof ApiError && error.status === 404;
    say("error", gone ? "There is no such broadcast (it may have been deleted)." : `Could not load the broadcast (${error.message}).`);
    document.getElementById("download").hidden = true;
    return;
  }
  showBroadcast(b);
  if (!b.segments) {
    say("", "This broadcast has no recorded video yet.");
    return;
  }
  const player = attachPlayer(video, b.replay, {
    live: false,
    autoplay: false,
    hlsConfig: { autoStartLoad: true, startPosition: 0 },
    onFatal: (text) => say("error", text),
  });
  document.body.dataset.player = player.kind || "none";
}

main();
