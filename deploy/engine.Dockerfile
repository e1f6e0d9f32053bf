# The engine's images, each built here from its registry: Temporal and iWF with `go install` from Go
# module proxies, PostgreSQL and HAProxy from Debian. `make images` builds every target; by hand:
#
#   podman build -f deploy/engine.Dockerfile --target iwf \
#     --build-context go="$(go env GOROOT)" --build-context goproxy=../shared/goproxy -t email-agent-iwf .
#
# Build contexts (nothing fetched is copied into this repository):
#   go       the Go toolchain (GOROOT), bind-mounted into the build stage only;
#   goproxy  a file Go module proxy put first in GOPROXY: this workplace's ../shared/goproxy serves
#            github.com/indeedeng/iwf, which the regular proxy refuses; any empty folder elsewhere.
# Go's module and build caches are cache mounts, so a rebuild takes seconds.

FROM debian:bookworm-slim AS go-build
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ARG GOPROXY_UPSTREAM=https://proxy.golang.org,direct
ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    GOPROXY=file:///goproxy,${GOPROXY_UPSTREAM} \
    GONOSUMDB=github.com/indeedeng/iwf \
    GOFLAGS=-buildvcs=false \
    CGO_ENABLED=0 \
    GOBIN=/out

FROM go-build AS temporal-build
ARG TEMPORAL_VERSION=v1.32.1
# Set by `make images` only where registries sit behind a TLS-inspecting proxy (see the Dockerfile).
ARG SSL_CERT_FILE
RUN --mount=type=bind,from=go,target=/usr/local/go \
    --mount=type=bind,from=goproxy,target=/goproxy \
    --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go install "go.temporal.io/server/cmd/server@${TEMPORAL_VERSION}" \
 && go install "go.temporal.io/server/cmd/tools/sql@${TEMPORAL_VERSION}"

# iWF's own CLI (github.com/indeedeng/iwf v1.19.3, pinned by deploy/iwf-server/go.mod and go.sum) in a
# ten-line main that sizes its Temporal worker's sticky cache from IWF_STICKY_CACHE_SIZE.
FROM go-build AS iwf-build
ARG SSL_CERT_FILE
COPY deploy/iwf-server /src/iwf-server
WORKDIR /src/iwf-server
RUN --mount=type=bind,from=go,target=/usr/local/go \
    --mount=type=bind,from=goproxy,target=/goproxy \
    --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -o /out/server .

# Temporal server and its SQL tool (schemas embedded); the config comes from a ConfigMap.
FROM debian:bookworm-slim AS temporal
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10002 --user-group --no-create-home temporal
COPY --from=temporal-build /out/server /usr/local/bin/temporal-server
COPY --from=temporal-build /out/sql /usr/local/bin/temporal-sql-tool
COPY deploy/temporal-schema /usr/local/bin/temporal-schema
USER temporal
EXPOSE 7233
ENTRYPOINT ["temporal-server"]
CMD ["--config-file", "/etc/temporal/config.yaml", "--allow-no-auth", "start"]

# iWF server, its output filtered to what an operator reads (devstack/iwf-quiet). Its sticky cache holds
# 2,000 workflows (about 400 MB RSS) instead of the Temporal SDK's 10,000 (1.5 GB with 10,000 waiting
# emails): docs/benchmarks.md, "Memory of the iWF server". Set IWF_STICKY_CACHE_SIZE to change it.
FROM debian:bookworm-slim AS iwf
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    IWF_STICKY_CACHE_SIZE=2000
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10003 --user-group --no-create-home iwf
COPY --from=iwf-build /out/server /usr/local/bin/iwf-server
COPY devstack/iwf-quiet /usr/local/bin/iwf-quiet
USER iwf
EXPOSE 8801
ENTRYPOINT ["iwf-quiet", "iwf-server"]
CMD ["--config", "/etc/iwf/config.yaml", "start"]

# PostgreSQL from Debian; the cluster is made on first start (deploy/postgres-start). The postgres user
# gets a fixed uid/gid (999) so a Kubernetes fsGroup can hand it a fresh volume; the cluster lives in a
# subdirectory of the volume, which initdb creates with the modes it insists on.
FROM debian:bookworm-slim AS postgres
RUN groupadd --system --gid 999 postgres \
 && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql --shell /bin/sh postgres \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
COPY deploy/postgres-start /usr/local/bin/postgres-start
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin PGDATA=/var/lib/postgresql/data/pgdata
USER postgres
EXPOSE 5432
CMD ["postgres-start"]

# HAProxy from Debian: where Kubernetes has Services and podman has none (deploy/podman).
FROM debian:bookworm-slim AS haproxy
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN apt-get update \
 && apt-get install -y --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/*
USER haproxy
ENTRYPOINT ["haproxy", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
