import { reactRouter } from "@react-router/dev/vite";
import { defineConfig } from "vite";
import { readFileSync } from "node:fs";

const pkg = JSON.parse(readFileSync(new URL("./package.json", import.meta.url), "utf8"));

// Which build this is, baked in at build time by the release pipeline (falls back to dev).
const build = {
  version: pkg.version,
  commit: process.env.HITSAVE_COMMIT || "unknown",
  release: process.env.HITSAVE_RELEASE || "dev",
};

export default defineConfig({
  // Vitest runs plain modules; the React Router plugin is only for the app build.
  plugins: [!process.env.VITEST && reactRouter()],
  define: {
    __HITSAVE_BUILD__: JSON.stringify(build),
  },
  test: {
    include: ["app/**/*.test.js"],
  },
});
