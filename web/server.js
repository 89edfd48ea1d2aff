// The production web server: serves the React Router build with Express.
// PORT (3000) and HOST (0.0.0.0) choose where it listens; API_URL where the API is.
// On SIGTERM/SIGINT it stops accepting connections, lets in-flight requests finish within
// SHUTDOWN_GRACE_SECS (20), then exits, so a deploy can swap it without dropping requests.
import { createRequestHandler } from "@react-router/express";
import express from "express";

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || "0.0.0.0";
const graceMs = Number(process.env.SHUTDOWN_GRACE_SECS || 20) * 1000;

const build = await import("./build/server/index.js").catch((err) => {
  console.error(`web: cannot load ./build/server/index.js (${err.message}); run \`npm run build\` first`);
  process.exit(1);
});

const app = express();
app.disable("x-powered-by");
// Fingerprinted assets never change under the same name.
app.use("/assets", express.static("build/client/assets", { immutable: true, maxAge: "1y" }));
// Artifacts date every file at one fixed time (ARTIFACT_EPOCH in xtask), so a changed file
// of the same size would keep its size+mtime ETag: validate nothing, refetch after the hour.
app.use(express.static("build/client", { maxAge: "1h", etag: false, lastModified: false }));
app.use(createRequestHandler({ build, mode: process.env.NODE_ENV ?? "production" }));

const server = app.listen(port, host, () => {
  console.log(`web: listening on http://${host}:${port} (API at ${process.env.API_URL || "http://localhost:8080"})`);
});

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`web: ${signal}: no new connections, finishing in-flight requests (up to ${graceMs / 1000} s)`);
  server.close(() => {
    console.log("web: stopped");
    process.exit(0);
  });
  // Keep-alive connections with no request in flight would hold close() open.
  server.closeIdleConnections();
  setTimeout(() => {
    console.warn("web: grace period over: cutting off the requests still running");
    server.closeAllConnections();
    process.exit(0);
  }, graceMs).unref();
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
