# syntax=docker/dockerfile:1
#
# egressd container image: a static binary on distroless, running as the
# image's non-root user by default.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t egressd .
#   docker run --rm egressd version
#
# Permissions: listening on port 53 as non-root needs CAP_NET_BIND_SERVICE
# (or the sysctl net.ipv4.ip_unprivileged_port_start=53), and the nftables
# backend needs CAP_NET_ADMIN. Container runtimes do not raise a non-root
# user's effective capabilities from --cap-add or securityContext, so a
# container that enforces runs as uid 0 with every other capability dropped:
#
#   docker run --user 0 --cap-drop ALL --cap-add NET_ADMIN --cap-add NET_BIND_SERVICE \
#     -v $PWD/egressd.toml:/etc/egressd/egressd.toml:ro egressd
#
# See examples/kubernetes for the same in a pod.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so source edits do not invalidate the download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/egressd ./cmd/egressd \
 && /out/egressd version \
 && /out/egressd check \
 && mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/egressd /egressd
# A config to start with; mount your own over it.
COPY configs/default.toml /etc/egressd/egressd.toml
# Downloaded category lists survive restarts here (mount a volume).
COPY --from=build --chown=65532:65532 /out/state /var/lib/egressd
ENV STATE_DIRECTORY=/var/lib/egressd
USER 65532:65532
# DNS over UDP and TCP, and Prometheus metrics.
EXPOSE 53/udp 53/tcp 9153/tcp
ENTRYPOINT ["/egressd"]
CMD ["serve", "-config", "/etc/egressd/egressd.toml"]
