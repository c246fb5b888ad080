// Shared by every page: the JSON API, formatting, the service banner, and the HLS player.
// Plain ES module, no build step. Text from the API goes into the page with textContent only.

export const CHANNEL_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
export const BROADCAST_RE = /^[A-Za-z0-9_-]{12}$/;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(path, options = {}) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, ...options });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.clone().json();
      if (body && body.error) message = body.error;
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(response.status, message);
  }
  return response.json();
}

// The last path segment, checked like the server checks it.
export function pathParam(pattern) {
  const parts = location.pathname.split("/").filter(Boolean);
  const value = decodeURIComponent(parts[parts.length - 1] || "");
  return pattern.test(value) ? value : null;
}

// el("a", {href: "/x", class: "y"}, "text", child) -> element; null/false children are skipped.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "style") Object.assign(node.style, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function setText(id, text) {
  const node = document.getElementById(id);
  if (node) node.textContent = text;
}

// Formatting --------------------------------------------------------------------------------

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return `${h ? h + ":" : ""}${mm}:${String(s).padStart(2, "0")}`;
}

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || !isFinite(bytes)) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function formatDate(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return isNaN(date) ? "–" : dateFormat.format(date);
}

export function timeAgo(iso, now = Date.now()) {
  const date = new Date(iso);
  if (!iso || isNaN(date)) return "";
  const seconds = Math.max(0, Math.round((now - date.getTime()) / 1000));
  if (seconds < 60) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${minutes % 60} min ago`;
  return formatDate(iso);
}

export function liveFor(iso, now = Date.now()) {
  const date = new Date(iso);
  if (!iso || isNaN(date)) return "";
  return `live for ${formatDuration((now - date.getTime()) / 1000)}`;
}

export function resolution(item) {
  if (item.width && item.height) return `${item.width}×${item.height}`;
  return item.resolution || "";
}

// A poster placeholder: a gradient made from the channel name, always the same for a name,
// dark enough for white text (contrast above 4.5:1).
export function channelHue(name) {
  let hash = 2166136261;
  for (const ch of name) {
    hash ^= ch.codePointAt(0);
    hash = Math.imul(hash, 16777619) >>> 0;
  }
  return hash % 360;
}

export function poster(name, ...overlays) {
  const hue = channelHue(name);
  const node = el("div", { class: "poster", "aria-hidden": "true" }, name.slice(0, 2).toUpperCase(), ...overlays);
  node.style.background = `linear-gradient(135deg, hsl(${hue} 60% 30%), hsl(${(hue + 50) % 360} 55% 20%))`;
  return node;
}

// Service banner -----------------------------------------------------------------------------

const PHASE_TEXT = {
  registrations_closed: "This service is closing: new channels can no longer be registered.",
  broadcasts_closed: "This service is closing: going live is no longer possible.",
  shutdown: "This service is shutting down.",
};

export async function showServiceBanner() {
  const banner = document.getElementById("service-banner");
  if (!banner) return;
  let service;
  try {
    service = await api("/api/service");
  } catch {
    return; // 404 (not there yet) or unreachable: treat as "open"
  }
  if (!service || !PHASE_TEXT[service.phase]) return;
  const dates = [
    [service.registrations_close_at, "Registrations closed", "Registrations close"],
    [service.broadcasts_close_at, "Broadcasting ended", "Broadcasting ends"],
    [service.shutdown_at, "The server shut down", "The server shuts down"],
  ]
    .filter(([iso]) => iso)
    .map(([iso, done, coming]) => `${new Date(iso).getTime() <= Date.now() ? done : coming}: ${formatDate(iso)}`);
  banner.replaceChildren(
    el("strong", {}, PHASE_TEXT[service.phase]),
    dates.length ? el("ul", {}, dates.map((d) => el("li", {}, d))) : null,
    el("span", {}, "Download the recordings you want to keep from each channel page."),
  );
  banner.dataset.phase = service.phase;
  banner.hidden = false;
}


// Player -------------------------------------------------------------------------------------

export const HLS_TYPE = "application/vnd.apple.mpegurl";

// Which player to use: ?player=hlsjs|native forces one. Otherwise hls.js (when installed and the
// browser has MediaSource), except in Safari-like browsers (ManagedMediaSource and native HLS),
// where native playback is the better one; without hls.js, native if the browser claims it.
// (Chromium answers "maybe" to canPlayType(HLS) but its native HLS is young: hls.js first there.)
export function choosePlayer(video) {
  const forced = new URLSearchParams(location.search).get("player");
  const native = video.canPlayType(HLS_TYPE) !== "";
  const hlsjs = typeof window.Hls === "function" && window.Hls.isSupported();
  if (forced === "native" && native) return "native";
  if (forced === "hlsjs" && hlsjs) return "hlsjs";
  if (native && "ManagedMediaSource" in window) return "native";
  if (hlsjs) return "hlsjs";
  if (native) return "native";
  return null;
}

// Attaches `url` to `video`. Returns {kind, latency(), destroy()}; calls hooks.onEnded() once when
// a live stream has ended (ENDLIST seen and played to the end), hooks.onFatal(message) when
// playback cannot go on.
export function attachPlayer(video, url, hooks = {}) {
  const kind = choosePlayer(video);
  video.dataset.player = kind || "none";
  let ended = false;
  const endOnce = () => {
    if (!ended) {
      ended = true;
      if (hooks.onEnded) hooks.onEnded();
    }
  };
  const fatal = (message) => hooks.onFatal && hooks.onFatal(message);

  if (kind === null) {
    fatal(
      "This browser cannot play HLS by itself, and this server has no hls.js yet " +
      "(static/vendor/hls.min.js; the operator installs it with: periscope-ingest fetch-hlsjs). " +
      "Open the stream in VLC or Safari meanwhile."
    );
    return { kind, latency: () => null, destroy() {} };
  }

  video.addEventListener("ended", endOnce);

  if (kind === "native") {
    video.src = url;
    video.addEventListener("error", () => {
      const error = video.error;
      fatal(`The video could not be played${error && error.message ? ": " + error.message : "."}`);
    });
    if (hooks.autoplay !== false) tryPlay(video);
    return {
      kind,
      latency() {
        const seekable = video.seekable;
        if (!seekable || seekable.length === 0) return null;
        const edge = seekable.end(seekable.length - 1);
        return isFinite(edge) ? Math.max(0, edge - video.currentTime) : null;
      },
      destroy() {
        video.removeAttribute("src");
        video.load();
      },
    };
  }

  const Hls = window.Hls;
  const hls = new Hls({
    enableWorker: true,
    // Only takes effect on LL-HLS playlists (with parts); regular ones play as before.
    lowLatencyMode: true,
    // After a stall, catch up with the live edge by playing slightly faster.
    maxLiveSyncPlaybackRate: 1.5,
    liveSyncDurationCount: 3,
    backBufferLength: 60,
    ...(hooks.hlsConfig || {}),
  });
  let mediaRecoveries = 0;
  hls.on(Hls.Events.ERROR, (_event, data) => {
    if (!data.fatal) return;
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR && mediaRecoveries < 2) {
      mediaRecoveries += 1;
      hls.recoverMediaError();
      return;
    }
    if (data.type === Hls.ErrorTypes.NETWORK_ERROR && hooks.live && data.details === "levelLoadError") {
      // The live playlist is gone (the broadcast ended and was cleaned up): treat as ended.
      endOnce();
      return;
    }
    fatal(`Playback stopped (${data.details}).`);
    hls.destroy();
  });
  hls.on(Hls.Events.LEVEL_LOADED, (_event, data) => {
    if (hooks.onPlaylist) hooks.onPlaylist(data.details);
    // ENDLIST: the broadcast is over. Let what is buffered play out, then "ended" fires.
    if (hooks.live && data.details && !data.details.live && hooks.onEndList) hooks.onEndList();
  });
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    if (hooks.autoplay !== false) tryPlay(video);
  });
  hls.loadSource(url);
  hls.attachMedia(video);
  return {
    kind,
    hls,
    latency() {
      if (typeof hls.latency === "number" && isFinite(hls.latency) && hls.latency > 0) return hls.latency;
      const sync = hls.liveSyncPosition;
      return typeof sync === "number" && isFinite(sync) ? Math.max(0, sync - video.currentTime) : null;
    },
    destroy() {
      hls.destroy();
    },
  };
}

// Autoplay may be refused (no user gesture): start muted, and if even that is refused the
// controls are there for the viewer to press play.
export function tryPlay(video) {
  const attempt = video.play();
  if (attempt && attempt.catch) {
    attempt.catch(() => {
      if (!video.muted) {
        video.muted = true;
        video.play().catch(() => {});
      }
    });
  }
}

export function startPage() {
  showServiceBanner();
}
