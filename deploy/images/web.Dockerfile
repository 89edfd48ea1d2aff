# The web app's runtime image: the unpacked `web` artifact (build/, server.js, production
# node_modules) on a Node.js >= 20.19 base named by the build argument.
ARG BASE=node:22-bookworm-slim
FROM ${BASE}
COPY . /app/
WORKDIR /app
ENTRYPOINT ["node", "server.js"]
