# periscope-ingest: RTMP in on 1935, HLS and the web pages on 8080, data in /data.

# hls.js for browsers without native HLS, from its npm package (never committed to the repo).
FROM node:20-slim AS hlsjs
WORKDIR /src
COPY scripts/install-hlsjs.sh scripts/
RUN mkdir -p periscope_ingest/web/static && bash scripts/install-hlsjs.sh

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PERISCOPE_DATA_DIR=/data PERISCOPE_HOST=0.0.0.0
WORKDIR /app
COPY pyproject.toml README.md ./
COPY periscope_ingest ./periscope_ingest
COPY --from=hlsjs /src/periscope_ingest/web/static/vendor ./periscope_ingest/web/static/vendor
COPY config ./config
# PyAV's wheels bundle FFmpeg: no system media libraries are needed.
RUN pip install --no-cache-dir . && useradd --system --home /data periscope \
    && mkdir -p /data && chown periscope /data

USER periscope
VOLUME ["/data"]
EXPOSE 1935 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
# SIGTERM ends every live broadcast (EXT-X-ENDLIST, recording finalised) before the exit; the
# first start prints the first channel's stream key once (docker logs).
STOPSIGNAL SIGTERM
ENTRYPOINT ["periscope-ingest"]
CMD ["serve"]
