import { buildInfo } from "../lib/build-info.js";

// Liveness of the web server itself; it does not depend on the API being up.
export function loader() {
  return Response.json({ status: "ok", service: "web", ...buildInfo() });
}
