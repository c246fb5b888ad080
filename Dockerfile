# periscope-ingest: RTMP in on 1935, HLS and the web pages on 8080, data in /data.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PERISCOPE_DATA_DIR=/data PERISCOPE_HOST=0.0.0.0
WORKDIR /app

# Dependencies first, from pyproject.toml alone: a code change does not reinstall them.
# (PyAV's wheels bundle FFmpeg: no system media libraries are needed.)
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt

COPY README.md setup.py ./
COPY periscope_ingest ./periscope_ingest
COPY config ./config
# The pinned hls.js, checked against its hash (periscope_ingest/web/hlsjs.py). The wheel build
# (setup.py) packs it in when the npm registry answers; fetching it again here makes the image
# build fail, rather than ship pages Chrome and Firefox cannot play, when it does not.
RUN pip install --no-cache-dir --no-deps . && periscope-ingest fetch-hlsjs \
      --dest "$(python -c 'from periscope_ingest.web.hlsjs import VENDOR_DIR; print(VENDOR_DIR)')"

# A fixed user and group, 10001:10001, so that a bind mount can be prepared for it:
#   mkdir -p data && sudo chown 10001:10001 data && docker run -v "$PWD/data:/data" ...
RUN groupadd --system --gid 10001 periscope \
    && useradd --system --uid 10001 --gid 10001 --home /data periscope \
    && mkdir -p /data && chown 10001:10001 /data
USER 10001:10001
VOLUME ["/data"]
EXPOSE 1935 8080
# The port comes from the settings (PERISCOPE_HTTP_PORT, or the TOML file), like the server's.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s CMD ["periscope-ingest", "health"]
# SIGTERM ends every live broadcast (EXT-X-ENDLIST, recording finalised) within
# shutdown_timeout (15 s): stop with a longer grace, `docker stop -t 30`. Without a terminal the
# first start writes the first channel's key to /data/first-start-secrets.txt (mode 0600).
STOPSIGNAL SIGTERM
ENTRYPOINT ["periscope-ingest"]
CMD ["serve"]
