# hermes, the WhatsApp gateway, in a small image:
#   docker build -t hermes .
#   docker run -it --rm -v hermes-data:/data hermes whatsapp     # link once (QR code)
#   docker run -d --name hermes -v hermes-data:/data -p 127.0.0.1:8080:8080 hermes
# Everything hermes keeps (the WhatsApp session, .env, config.yaml, the journal) is under
# /data, a volume: re-creating the container never asks for a new scan. On the container's own
# layer instead, `hermes gateway` refuses to start (unless --ephemeral).

FROM rust:1.94-slim-bookworm AS build
WORKDIR /src
COPY . .
# The build users install: no simulator, no certificate-check escape hatch.
RUN cargo build --release --locked -p hermes \
 && strip target/release/hermes

FROM debian:bookworm-slim
# CA certificates for the model and speech APIs (WhatsApp's own chain is checked by hermes);
# tini as PID 1, so that what an alert command leaves behind is reaped.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin hermes \
 && install -d -m 0700 -o hermes -g hermes /data
COPY --from=build /src/target/release/hermes /usr/local/bin/hermes
# The listener on every interface of the container (publish it on the host's loopback, as
# above); beyond loopback the page and /metrics need the token in /data/state/gateway.json.
ENV HERMES_HOME=/data \
    HERMES_GATEWAY_LISTEN=0.0.0.0:8080
VOLUME ["/data"]
USER hermes
EXPOSE 8080
# Through the binary itself: ready means linked, connected, keeping and sending.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["hermes", "gateway", "health"]
ENTRYPOINT ["tini", "--", "hermes"]
CMD ["gateway"]
