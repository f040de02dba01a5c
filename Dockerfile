# syntax=docker/dockerfile:1
# Mileage: one image with the service binaries (mileage-command-api,
# mileage-projector, mileage-query-api, replay, mint-token); the container's
# command picks the service.
#
#   docker build -t mileage .
#   docker build --build-arg PROFILE=dev -t mileage:dev .
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
ARG PROFILE=release
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile "${PROFILE}" --bins \
    && out="target/$([ "${PROFILE}" = dev ] && echo debug || echo "${PROFILE}")" \
    && mkdir -p /out \
    && cp "$out/mileage-command-api" "$out/mileage-projector" "$out/mileage-query-api" \
          "$out/replay" "$out/mint-token" /out/

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mileage
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
ENV COMMAND_API_ADDR=0.0.0.0:8081 \
    QUERY_API_ADDR=0.0.0.0:8084 \
    PROJECTOR_ADDR=0.0.0.0:8085 \
    LOG_FORMAT=json \
    RUST_LOG=info
EXPOSE 8081 8084 8085
CMD ["mileage-command-api"]
