# Multi-stage build: the release binary in a small runtime image, run as a non-root user.
#   docker build -t devmesh .
#   docker run -p 8080:8080 -p 8081:8081 -v devmesh-data:/var/lib/devmesh devmesh
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked && rm -rf src
COPY src src
COPY migrations migrations
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/devmesh --shell /usr/sbin/nologin devmesh \
    && install -d -o devmesh -g devmesh /var/lib/devmesh
COPY --from=build /src/target/release/devmesh /usr/local/bin/devmesh
USER devmesh
WORKDIR /var/lib/devmesh
ENV DEVMESH_DATA_DIR=/var/lib/devmesh \
    DEVMESH_MCP__LISTEN=0.0.0.0:8080 \
    DEVMESH_API__LISTEN=0.0.0.0:8081 \
    DEVMESH_LOG__FORMAT=json
VOLUME /var/lib/devmesh
EXPOSE 8080 8081
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8081 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '200 OK' <&3"]
ENTRYPOINT ["devmesh"]
CMD ["serve"]
