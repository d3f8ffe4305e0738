# Multi-stage build: cargo-chef caches the dependency layer, the runtime is debian slim with the
# C libraries samael needs at run time (libxml2, libxmlsec1 with its OpenSSL engine), non-root.

FROM rust:1.95-slim-bookworm AS chef
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev libxml2-dev libxmlsec1-dev libclang-dev libpq-dev \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin ssobroker

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libxml2 libxmlsec1 libxmlsec1-openssl libssl3 libpq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin ssobroker \
 && mkdir -p /data /etc/ssobroker \
 && chown ssobroker:ssobroker /data
COPY --from=builder /src/target/release/ssobroker /usr/local/bin/ssobroker
USER ssobroker
WORKDIR /data
VOLUME /data
# The database stays a config-file setting (environment values override the file): use
# database_url = "sqlite:///data/ssobroker.db" or a postgres:// URL there.
ENV SSOBROKER_CONFIG=/etc/ssobroker/ssobroker.toml \
    SSOBROKER_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["ssobroker", "healthcheck"]
ENTRYPOINT ["ssobroker"]
CMD ["serve"]
