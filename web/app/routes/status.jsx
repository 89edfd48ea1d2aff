import { buildInfo, describeBuild } from "../lib/build-info.js";
import { apiHealth } from "../lib/api.server.js";

export function meta() {
  return [{ title: "HitSave status" }];
}

export async function loader() {
  return { web: buildInfo(), api: await apiHealth() };
}

export default function Status({ loaderData }) {
  const { web, api } = loaderData;
  return (
    <main className="page">
      <h1>Status</h1>
      <dl className="status">
        <dt>Web</dt>
        <dd data-testid="web-version">{describeBuild(web)}</dd>
        <dt>API</dt>
        <dd data-testid="api-version">
          {api.health ? describeBuild(api.health) : <span className="error">unavailable: {api.error}</span>}
        </dd>
      </dl>
      <footer><a href="/">Home</a></footer>
    </main>
  );
}
