import { reactRouter } from "@react-router/dev/vite";
import { defineConfig } from "vite";
import { readFileSync } from "node:fs";

const pkg = JSON.parse(readFileSync(new URL("./package.json", import.meta.url), "utf8"));


export default defineConfig({
  // Vitest runs plain modules; the React Router plugin is only for the app build.
  plugins: [!process.env.VITEST && reactRouter()],
  define: {
    // Only the version is baked in: the release id comes from the environment at run time
    // (app/lib/build-info.js), so the build does not change from one commit to the next.
    __HITSAVE_VERSION__: JSON.stringify(pkg.version),
  },
  server: {
    // `cargo xtask dev` serves the dev server through nginx at hitsave-local.io; Vite answers
    // only the host names it knows.
    allowedHosts: [".hitsave-local.io"],
  },
  test: {
    include: ["app/**/*.test.js"],
  },
});
