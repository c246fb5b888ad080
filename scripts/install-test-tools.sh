#!/usr/bin/env bash
# The real encoders the end-to-end tests push with: Debian's ffmpeg and GStreamer (rtmp2sink,
# x264enc, avenc_aac). Installed only when missing; needs root (or sudo) and apt.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v gst-launch-1.0 >/dev/null || need+=(gstreamer1.0-tools)
if command -v gst-inspect-1.0 >/dev/null; then
  gst-inspect-1.0 rtmp2sink >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-bad)
  gst-inspect-1.0 x264enc >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-ugly)
  gst-inspect-1.0 avenc_aac >/dev/null 2>&1 || need+=(gstreamer1.0-libav)
  gst-inspect-1.0 flvmux >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-good)
  gst-inspect-1.0 videotestsrc >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-base)
else
  need+=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
         gstreamer1.0-plugins-ugly gstreamer1.0-libav)
fi
# strace: the durability test reads the server's fsync and rename calls.
command -v strace >/dev/null || need+=(strace)
# openssl: the TLS tests make their self-signed certificate with it.
command -v openssl >/dev/null || need+=(openssl)
# redis-server: the cluster tests run two nodes sharing one (tests/e2e/test_cluster.py).
command -v redis-server >/dev/null || need+=(redis-server)
# Caddy: the tested reverse-proxy example (config/Caddyfile) terminates TLS in front of us.
command -v caddy >/dev/null || need+=(caddy)
# nginx with nginx-rtmp: the peer the benchmark scripts (and their smoke test) measure against.
[ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need+=(nginx libnginx-mod-rtmp)
# PostgreSQL: the catalog's second backend; its tests start their own cluster (initdb).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  # The packages must not start services (nginx would take port 80): the benchmarks and tests
  # start their own on loopback ports. policy-rc.d answering 101 is Debian's way to say so.
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
    trap '$SUDO rm -f "$guard"' EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# Headless Chromium, chromedriver and selenium for the browser tests.
"$(dirname "$0")/install-browser-tools.sh"
