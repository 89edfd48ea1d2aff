# The API's runtime image: the unpacked `api` artifact (bin/hitsave) on a base named by the
# build argument; built by `cargo xtask install` with the artifact directory as the context.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
COPY . /app/
WORKDIR /app
EXPOSE 8080
ENTRYPOINT ["/app/bin/hitsave"]
