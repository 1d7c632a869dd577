# syntax=docker/dockerfile:1
# The alertflow binaries (alertflow, alertflow-worker, alertflow-beat) in a
# small Debian image, running as an unprivileged user.
#
#   docker build -t alertflow:local .
#   docker run --rm alertflow:local alertflow --help
#
# Used by docker-compose.yml (`docker compose up -d --build`).

# --- build -------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them: stub crates
# (the package and the workspace members) with the real manifests and lock file.
COPY Cargo.toml Cargo.lock ./
COPY crates/queue/Cargo.toml crates/queue/
COPY crates/sandbox/Cargo.toml crates/sandbox/
RUN mkdir -p src/bin crates/queue/src crates/sandbox/src \
 && echo 'fn main() {}' > src/bin/alertflow.rs \
 && cp src/bin/alertflow.rs src/bin/worker.rs \
 && cp src/bin/alertflow.rs src/bin/beat.rs \
 && touch src/lib.rs crates/queue/src/lib.rs crates/sandbox/src/lib.rs \
 && cargo build --release --locked --bins \
 && rm -rf src crates/queue/src crates/sandbox/src
COPY src ./src
COPY crates ./crates
# Make cargo see the real sources as newer than the stub's build.
RUN touch src/lib.rs src/bin/*.rs crates/*/src/lib.rs \
 && cargo build --release --locked --bins \
 && mkdir -p /out \
 && cp target/release/alertflow target/release/alertflow-worker target/release/alertflow-beat /out/

# --- runtime -----------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to Lark, amqps://, rediss:// verify against the system
# store. curl: the compose health checks (GET /healthz).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system alertflow \
 && useradd --system --gid alertflow --home-dir /var/lib/alertflow --create-home \
      --shell /usr/sbin/nologin alertflow
COPY --from=build /out/ /usr/local/bin/
COPY deploy/alertflow.toml /etc/alertflow/alertflow.toml
ENV ALERTFLOW_LOG_FORMAT=json \
    ALERTFLOW_LOG=info,lapin=warn,amq_protocol=warn
USER alertflow
WORKDIR /var/lib/alertflow
# /metrics and /healthz of a worker (9808) and of a beat (9810), when the
# config makes them listen beyond loopback (deploy/docker/alertflow.toml does).
EXPOSE 9808 9810
# SIGTERM drains running tasks (worker.shutdown_timeout); give
# `docker stop -t` / compose `stop_grace_period` more than that.
STOPSIGNAL SIGTERM
CMD ["alertflow-worker"]
