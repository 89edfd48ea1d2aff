# The API's runtime image: the unpacked `api` artifact (bin/hitsave) on a base named by the
# build argument; built by `cargo xtask install` with the artifact directory as the context.
# Each instruction after FROM is a commit the legacy builder makes (some 75 ms of an install,
# more under load): only what running the app needs. It reads no file by a relative path (no
# WORKDIR) and listens on 8080 (the compose file).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
COPY . /app/
ENTRYPOINT ["/app/bin/hitsave"]
