import { index, route } from "@react-router/dev/routes";

export default [
  index("routes/home.jsx"),
  route("status", "routes/status.jsx"),
  route("healthz", "routes/healthz.js"),
];
