// Server-rendered: the waitlist form works without JavaScript in the browser.
// The v8 flags opt in to React Router 8's behaviour now, so the upgrade is a version bump.
export default {
  ssr: true,
  future: {
    v8_middleware: true,
    v8_passThroughRequests: true,
    v8_splitRouteModules: true,
    v8_trailingSlashAwareDataRequests: true,
    v8_viteEnvironmentApi: true,
  },
};
