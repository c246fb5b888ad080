// Channel: every broadcast of the channel, and "download everything" (a zip of MP4s). An owner
// may keep an API token in this browser; the archive download then sends it as a Bearer token.
import {
  CHANNEL_RE,
  api,
  el,
  formatBytes,
  formatDate,
  formatDuration,
  liveFor,
  pathParam,
  poster,
  setText,
  startPage,
} from "./common.js";

const channel = pathParam(CHANNEL_RE);
const rows = document.getElementById("broadcast-rows");
const more = document.getElementById("more");
const archive = document.getElementById("archive");
const archiveStatus = document.getElementById("archive-status");
const archiveError = document.getElementById("archive-error");
const tokenInput = document.getElementById("token");
const tokenKey = `periscope-ingest.token.${channel}`;
let nextUrl = null;
let finished = 0;

const STATUS_TEXT = { live: "live now", ended: "ended", interrupted: "interrupted" };

// A small still of the broadcast (the server's poster) over the colored placeholder, which stays
// underneath until the image loads, and for good if it fails (the <img> is then removed). Only
// asked for when the broadcast has video and a complete segment, so a 404 is rare.
function thumbnail(b, href) {
  const node = poster(b.channel);
  Object.assign(node.style, { width: "96px", flex: "none", fontSize: "1rem", borderRadius: "4px", overflow: "hidden" });
  if (b.video_codec && b.segments) {
    const image = el("img", { src: `/replays/${encodeURIComponent(b.id)}/poster.jpg`, alt: "", decoding: "async", loading: "lazy" });
    Object.assign(image.style, { position: "absolute", inset: "0", width: "100%", height: "100%", objectFit: "cover" });
    image.addEventListener("error", () => image.remove(), { once: true });
    node.prepend(image);
  }
  return el("a", { href, tabindex: "-1", "aria-hidden": "true" }, node);
}

function row(b) {
  const replay = `/replays/${encodeURIComponent(b.id)}`;
  const name = b.title || formatDate(b.started_at);
  const href = b.status === "live" ? `/watch/${encodeURIComponent(b.channel)}` : replay;
  return el(
    "tr",
    { dataset: { broadcast: b.id } },
    el(
      "td",
      {},
      el(
        "div",
        { style: { display: "flex", alignItems: "center", gap: "10px" } },
        thumbnail(b, href),
        el("div", {}, el("a", { href }, name), b.title ? el("div", { class: "muted" }, formatDate(b.started_at)) : null),
      ),
    ),
    el("td", { class: "num", "data-label": "Duration" }, b.status === "live" ? liveFor(b.started_at) : formatDuration(b.duration)),
    el("td", { class: "num", "data-label": "Size" }, formatBytes(b.mp4_size ?? b.size)),
    el("td", { "data-label": "Status" }, b.status === "live" ? el("span", { class: "badge live" }, "Live") : STATUS_TEXT[b.status] || b.status),
    el(
      "td",
      { "data-label": "Download" },
      b.segments ? el("a", { href: b.mp4, download: "", "aria-label": `Download ${name} as MP4` }, "MP4") : "–",
    ),
  );
}

async function loadPage(url) {
  const page = await api(url);
  rows.append(...page.broadcasts.map(row));
  finished += page.broadcasts.filter((b) => b.status !== "live" && b.segments).length;
  nextUrl = page.next;
  more.hidden = !nextUrl;
  const any = rows.children.length > 0;
  document.getElementById("broadcasts").hidden = !any;
  document.getElementById("broadcasts-empty").hidden = any;
  archive.setAttribute("aria-disabled", String(finished === 0));
  archiveStatus.textContent = finished === 0 ? "Nothing to download yet." : "";
  const live = page.broadcasts.find((b) => b.status === "live");
  if (live) {
    const box = document.getElementById("live-now");
    box.replaceChildren(
      el("span", { class: "badge live" }, "Live"),
      " ",
      el("a", { href: `/watch/${encodeURIComponent(channel)}` }, `${channel} is live now: watch`),
    );
    box.hidden = false;
  }
}

function savedToken() {
  try {
    return localStorage.getItem(tokenKey) || "";
  } catch {
    return ""; // storage disabled
  }
}

// With a token the download has to go through fetch (a link cannot send headers): straight to
// a file where the browser allows it (File System Access), else through memory as a Blob.
async function downloadWithToken(token) {
  const name = `${channel}-archive.zip`;
  archiveStatus.textContent = "Preparing the archive…";
  archiveError.hidden = true;
  try {
    let sink = null;
    if (window.showSaveFilePicker) {
      try {
        const handle = await window.showSaveFilePicker({ suggestedName: name });
        sink = await handle.createWritable();
      } catch (error) {
        if (error.name === "AbortError") {
          archiveStatus.textContent = "";
          return;
        }
      }
    }
    const response = await fetch(archive.href, { headers: { Authorization: `Bearer ${token}` } });
    if (response.status === 401 || response.status === 403) throw new Error("the token was refused");
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    archiveStatus.textContent = "Downloading…";
    if (sink) {
      await response.body.pipeTo(sink);
    } else {
      const url = URL.createObjectURL(await response.blob());
      const link = el("a", { href: url, download: name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    }
    archiveStatus.textContent = "Downloaded.";
  } catch (error) {
    archiveStatus.textContent = "";
    archiveError.textContent = `The download failed: ${error.message}.`;
    archiveError.hidden = false;
  }
}

async function main() {
  startPage();
  if (!channel) {
    setText("title", "Unknown channel");
    return;
  }
  document.title = `${channel} · Channel · periscope-ingest`;
  setText("title", channel);
  archive.href = `/api/channels/${encodeURIComponent(channel)}/archive.zip`;
  tokenInput.value = savedToken();
  archive.addEventListener("click", (event) => {
    if (archive.getAttribute("aria-disabled") === "true") {
      event.preventDefault();
      return;
    }
    const token = savedToken();
    if (token) {
      event.preventDefault();
      downloadWithToken(token);
    }
  });
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      localStorage.setItem(tokenKey, tokenInput.value.trim());
      archiveStatus.textContent = tokenInput.value.trim() ? "Token saved in this browser." : "";
    } catch {
      archiveStatus.textContent = "This browser does not allow saving the token.";
    }
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    try {
      localStorage.removeItem(tokenKey);
    } catch {
      // nothing saved
    }
    tokenInput.value = "";
    archiveStatus.textContent = "Token forgotten.";
  });
  more.addEventListener("click", async () => {
    if (!nextUrl) return;
    more.disabled = true;
    try {
      await loadPage(nextUrl);
    } finally {
      more.disabled = false;
    }
  });
  try {
    await loadPage(`/api/broadcasts?channel=${encodeURIComponent(channel)}&limit=50`);
  } catch (error) {
    archiveError.textContent = `Could not load the broadcasts (${error.message}).`;
    archiveError.hidden = false;
  }
}

main();
