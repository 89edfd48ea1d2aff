# Node.js from Debian trixie (20.19, what the web app needs at least), like node:*-slim.
ARG BASE=hitsave-base/debian:trixie
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs \
 && rm -rf /var/lib/apt/lists/*
CMD ["node"]
