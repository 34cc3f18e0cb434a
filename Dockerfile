# syntax=docker/dockerfile:1
#
# The worker image: one static binary on distroless/static (CA certificates,
# time zones, no shell, no package manager), run as a numeric non-root user.
#
#   docker build -t sqsworker .                 # the worker (the last stage)
#   docker build --build-arg VERSION=v1.2.3 --build-arg REVISION=$(git rev-parse HEAD) -t sqsworker:v1.2.3 .
#   docker run --rm sqsworker version
#
# The example-handler and example-producer stages are the examples the
# compose stack runs beside the worker (docker-compose.yml).

# Base images, each by an exact tag. The Go toolchain's is its full version
# (go.mod's). distroless publishes no version tags (static-debian12 is the
# Debian release, nonroot the variant), so a build that must not change
# under a moving tag pins the runtime base by a digest it has checked:
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot
#   docker build --build-arg RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:… .
ARG GO_VERSION=1.26.8
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first: a code change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The image is built without .git, so the version and commit come as build
# arguments; `worker version` prints them.
ARG VERSION=""
ARG REVISION=""
# Static (no libc), reproducible (no local paths), stripped; grpcnotrace
# keeps gRPC's request tracing out, which makes the binary a third smaller.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -tags grpcnotrace \
      -ldflags="-s -w -X github.com/sqsworker/sqsworker/internal/buildinfo.version=${VERSION} -X github.com/sqsworker/sqsworker/internal/buildinfo.revision=${REVISION}" \
      -o /out/worker ./cmd/worker && \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/example-handler ./examples/handler && \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/example-producer ./examples/producer && \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/example-function ./examples/function && \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/aws-lambda-rie github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie

FROM ${RUNTIME_IMAGE} AS example-handler
COPY --from=build /out/example-handler /example-handler
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/example-handler", "--addr", ":8080"]

FROM ${RUNTIME_IMAGE} AS example-producer
COPY --from=build /out/example-producer /example-producer
USER 65532:65532
ENTRYPOINT ["/example-producer"]

# Last, so that a plain `docker build .` builds it.
# The example Lambda function (examples/function) in the Lambda runtime
# interface emulator, as a function image runs it: the worker's lambda
# handler invokes it at http://function:8080 (function name "function").
# The emulator is built from its Go module, pinned in go.mod as a tool.
FROM ${RUNTIME_IMAGE} AS example-function
COPY --from=build /out/aws-lambda-rie /usr/local/bin/aws-lambda-rie
COPY --from=build /out/example-function /var/runtime/bootstrap
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/aws-lambda-rie", "/var/runtime/bootstrap"]

FROM ${RUNTIME_IMAGE} AS worker
COPY --from=build /out/worker /usr/local/bin/worker
# 65532 is distroless's nonroot user. Numeric, so that Kubernetes'
# runAsNonRoot can check it without reading /etc/passwd.
USER 65532:65532
# /metrics, /healthz and /readyz on every interface of the container, so
# that Prometheus and the kubelet's probes reach them: the worker's own
# default outside a container is loopback only. --metrics-addr overrides it.
ENV SQSWORKER_METRICS_ADDR=:9090
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/worker"]
CMD ["run"]
