# pushbridge: a static binary on distroless, running as a non-root user.
#
#   docker build -t pushbridge .
#   docker build --build-arg VERSION=v1.2.3 -t pushbridge:v1.2.3 .
#   docker run --rm -p 8080:8080 -v pushbridge-data:/data \
#     -e JWT_SECRET=<Superset's GLOBAL_ASYNC_QUERIES_JWT_SECRET> pushbridge
#
# The image has no shell, so it has no HEALTHCHECK: orchestrators probe
# GET /health (liveness: the process answers) and GET /ready (readiness:
# 503 while starting, catching up, disconnected from NATS or shutting down).
# See docs/deployment.md.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
ARG VERSION=""
# Static (no cgo), reproducible paths (-trimpath), stripped (-s -w); the
# version is what "pushbridge version" and the start-up log print (empty:
# the module version or "dev"). The build context has no .git, hence
# -buildvcs=false.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.buildVersion=${VERSION}" \
      -o /out/pushbridge ./cmd/pushbridge \
 && /out/pushbridge version \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pushbridge /pushbridge
# The embedded NATS server's store. A named volume mounted here starts with
# this directory's owner (nonroot, 65532), so the server can write to it.
COPY --from=build --chown=65532:65532 /out/data /data
# The store is /data whatever nats.storeDir says (environment beats the
# config file); -e PUSHBRIDGE_NATS_STORE_DIR=... moves it.
ENV PUSHBRIDGE_NATS_STORE_DIR=/data
# config.json is looked for in the working directory when --config is not
# given: mount one at /etc/pushbridge/config.json, or pass --config.
WORKDIR /etc/pushbridge
VOLUME ["/data"]
USER 65532:65532
# 8080: WebSockets, /health, /ready, /metrics and the publish API (PORT).
# 4222, 6222, 7222 and 7422 (NATS client, route, gateway and leaf node
# listeners) are used only by clustered configs and are deliberately not
# exposed: publish them on a private network only.
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/pushbridge"]
CMD ["serve"]
