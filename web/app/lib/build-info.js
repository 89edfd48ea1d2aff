/** The web app's version, commit and release id, fixed at build time (see vite.config.js). */
/* global __HITSAVE_BUILD__ */
export const BUILD = __HITSAVE_BUILD__;

/** "0.1.0 (release r1, commit abc1234)" */
export function describeBuild(info) {
  if (!info || typeof info !== "object" || !info.version) return "unknown";
  const commit = info.commit && info.commit !== "unknown" ? info.commit.slice(0, 12) : "unknown";
  return `${info.version} (release ${info.release ?? "unknown"}, commit ${commit})`;
}
