# Multi-stage build: one builder, two small runtime images (`--target updraft`, `--target stream-worker`).
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p updraft-cli -p stream-worker \
 && cp target/release/updraft target/release/stream-worker /usr/local/bin/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /opt/updraft updraft
WORKDIR /opt/updraft
USER updraft

FROM runtime AS updraft
USER root
# Plugins run as programs: python3 for the Python example (add what your plugins need).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/*
USER updraft
COPY --from=builder /usr/local/bin/updraft /usr/local/bin/updraft
COPY dags /opt/updraft/dags
COPY plugins /opt/updraft/plugins
EXPOSE 8080
CMD ["updraft", "standalone"]

FROM runtime AS stream-worker
COPY --from=builder /usr/local/bin/stream-worker /usr/local/bin/stream-worker
COPY streams /opt/updraft/streams
EXPOSE 9108
CMD ["stream-worker"]
