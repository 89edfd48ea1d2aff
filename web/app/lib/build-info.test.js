import { describe, expect, it } from "vitest";
import { buildInfo, describeBuild } from "./build-info.js";

describe("build info", () => {
  it("takes the version from the build and the release from the environment", () => {
    const info = buildInfo({ HITSAVE_RELEASE: "20261101000000-0123456789ab", HITSAVE_COMMIT: "0123" });
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(info.release).toBe("20261101000000-0123456789ab");
    expect(info.commit).toBe("0123");
    expect(buildInfo({})).toMatchObject({ release: "dev", commit: "unknown" });
  });

  it("describes a build for people", () => {
    expect(describeBuild({ version: "1.2.3", release: "r7", commit: "0123456789abcdef0123" })).toBe(
      "1.2.3 (release r7, commit 0123456789ab)",
    );
    expect(describeBuild({ version: "1.2.3", release: "dev", commit: "unknown" })).toBe(
      "1.2.3 (release dev, commit unknown)",
    );
    expect(describeBuild(null)).toBe("unknown");
  });
});
