/**
 * The web app's version (fixed at build time, see vite.config.js) and the release id and
 * commit, read from the environment at run time (HITSAVE_RELEASE, HITSAVE_COMMIT, set by
 * `cargo xtask install`). They are not baked into the build, so an unchanged web app is built
 * once and the same artifact serves every release that contains it. Server-side only.
 */
/* global __HITSAVE_VERSION__ */
export function buildInfo(env = process.env) {
  return {
    version: __HITSAVE_VERSION__,
    commit: env.HITSAVE_COMMIT || "unknown",
    release: env.HITSAVE_RELEASE || "dev",
  };
}

/** "0.1.0 (release r1, commit abc1234)" */
export function describeBuild(info) {
  if (!info || typeof info !== "object" || !info.version) return "unknown";
  const commit = info.commit && info.commit !== "unknown" ? info.commit.slice(0, 12) : "unknown";
  return `${info.version} (release ${info.release ?? "unknown"}, commit ${commit})`;
}
