# Fay, one node: `fay run` on port 8000, data under /data. Built and run by compose.yaml (see README "Deploying").
FROM python:3.11-slim-bookworm

# espeak-ng: the offline Mandarin voice's fallback; npm: the web client's modules (three.js, pixi, Live2D)
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends espeak-ng npm \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY fay_core ./fay_core
COPY plugins ./plugins
# editable: personas/, knowledge/ and web/ are found beside the package, as in a checkout
RUN pip install --no-cache-dir -e ".[offline,otel,postgres,cluster]"
COPY personas ./personas
COPY knowledge ./knowledge
COPY web/package.json web/package-lock.json ./web/
RUN cd web && npm ci --omit=dev --no-audit --no-fund --loglevel=error
COPY web ./web

ENV FAY_DATA_DIR=/data \
    FAY_CACHE_DIR=/data/cache \
    FAY_SERVER__HOST=0.0.0.0 \
    FAY_SERVER__PORT=8000 \
    FAY_SERVER__DRAIN_TIMEOUT_S=25 \
    LITELLM_LOCAL_MODEL_COST_MAP=True
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]
# SIGTERM drains (no new sessions, /ready 503) for FAY_SERVER__DRAIN_TIMEOUT_S, then exits 0
STOPSIGNAL SIGTERM
CMD ["fay", "run"]
