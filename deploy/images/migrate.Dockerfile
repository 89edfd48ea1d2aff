# The migrator's runtime image: the unpacked `migrate` artifact (bin/migrate), run once per
# install as the compose service `migrate` before any new API version gets traffic.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
COPY . /app/
ENTRYPOINT ["/app/bin/migrate"]
