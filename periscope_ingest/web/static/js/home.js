// Home: channels live now (refreshed every 10 s) and recent replays.
import { api, el, formatDate, formatDuration, liveFor, poster, resolution, startPage, timeAgo } from "./common.js";

const REFRESH_MS = 10_000;

// The server's poster (a JPEG still of the stream) over the colored placeholder, which stays
// underneath: until the image loads, and for good if it fails (the <img> is then removed). Only
// asked for when the item has video and a complete segment, so a 404 is rare.
function posterImage(src, name, ...overlays) {
  const node = poster(name, ...overlays);
  if (!src) return node;
  const image = el("img", { src, alt: "", decoding: "async", loading: "lazy" });
  Object.assign(image.style, {
    position: "absolute",
    inset: "0",
    width: "100%",
    height: "100%",
    objectFit: "cover",
  });
  image.addEventListener("error", () => image.remove(), { once: true });
  node.prepend(image); // the badge and length overlays come later: they stay on top
  return node;
}

function livePosterUrl(stream) {
  if (!stream.video_codec || !stream.segments) return null;
  return `/live/${encodeURIComponent(stream.channel)}/poster.jpg`;
}

function replayPosterUrl(b) {
  if (!b.video_codec || !b.segments) return null;
  return `/replays/${encodeURIComponent(b.id)}/poster.jpg`;
}

function liveCard(stream, title) {
  const href = `/watch/${encodeURIComponent(stream.channel)}`;
  const badge = el("span", { class: "badge live" }, stream.reconnecting ? "Live · reconnecting" : "Live");
  return el(
    "li",
    { class: "card", dataset: { channel: stream.channel } },
    el("a", { class: "cover", href, tabindex: "-1", "aria-hidden": "true" }, posterImage(livePosterUrl(stream), stream.channel, badge)),
    el(
      "div",
      { class: "card-body" },
      el("h3", { class: "card-title" }, el("a", { href }, title || stream.channel)),
      el(
        "p",
        { class: "card-meta" },
        title ? `${stream.channel} · ` : "",
        el("time", { datetime: stream.started_at }, liveFor(stream.started_at)),
        resolution(stream) ? ` · ${resolution(stream)}` : "",
      ),
    ),
  );
}

function replayCard(b) {
  const href = `/replays/${encodeURIComponent(b.id)}`;
  const length = el("span", { class: "length" }, formatDuration(b.duration));
  return el(
    "li",
    { class: "card", dataset: { broadcast: b.id } },
    el("a", { class: "cover", href, tabindex: "-1", "aria-hidden": "true" }, posterImage(replayPosterUrl(b), b.channel, length)),
    el(
      "div",
      { class: "card-body" },
      el("h3", { class: "card-title" }, el("a", { href }, b.title || formatDate(b.started_at))),
      el(
        "p",
        { class: "card-meta" },
        el("a", { href: `/channels/${encodeURIComponent(b.channel)}` }, b.channel),
        " · ",
        el("time", { datetime: b.ended_at || b.started_at, title: formatDate(b.started_at) }, timeAgo(b.ended_at || b.started_at)),
        b.status === "interrupted" ? " · interrupted" : "",
      ),
    ),
  );
}

async function refreshLive() {
  const [{ streams }, live] = await Promise.all([
    api("/api/streams"),
    api("/api/broadcasts?status=live&limit=100").catch(() => ({ broadcasts: [] })),
  ]);
  const titles = new Map(live.broadcasts.map((b) => [b.id, b.title]));
  const list = document.getElementById("live-list");
  list.replaceChildren(...streams.map((s) => liveCard(s, titles.get(s.broadcast_id))));
  document.getElementById("live-empty").hidden = streams.length > 0;
}

async function refreshRecent() {
  const { broadcasts } = await api("/api/broadcasts?limit=40");
  const finished = broadcasts.filter((b) => b.status !== "live" && b.segments > 0).slice(0, 12);
  document.getElementById("recent-list").replaceChildren(...finished.map(replayCard));
  document.getElementById("recent-empty").hidden = finished.length > 0;
}

function showError(error) {
  const node = document.getElementById("home-error");
  node.textContent = `Could not reach the server (${error.message}). Retrying…`;
  node.hidden = false;
}

async function refresh() {
  try {
    await Promise.all([refreshLive(), refreshRecent()]);
    document.getElementById("home-error").hidden = true;
  } catch (error) {
    showError(error);
  }
}

startPage();
refresh();
setInterval(() => {
  if (!document.hidden) refresh();
}, REFRESH_MS);
