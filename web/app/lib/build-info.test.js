import { describe, expect, it } from "vitest";
import { BUILD, describeBuild } from "./build-info.js";

describe("build info", () => {
  it("is baked in at build time", () => {
    expect(BUILD.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(BUILD.release).toBe(process.env.HITSAVE_RELEASE || "dev");
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
