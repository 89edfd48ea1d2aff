// Browser test: headless Debian Chromium against the built web server, which talks to the
// real API and database. `cargo xtask test browser` starts them and sets WEB_URL,
// CHROMIUM_PATH and E2E_EMAIL, then checks the row in the database.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

const webUrl = process.env.WEB_URL;
const email = process.env.E2E_EMAIL;
assert.ok(webUrl && email, "WEB_URL and E2E_EMAIL must be set: run `cargo xtask test browser`");

let browser;
let page;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  page = await browser.newPage();
});

after(async () => {
  await browser?.close();
});

test("the landing page renders", async () => {
  const res = await page.goto(webUrl);
  assert.equal(res.status(), 200);
  assert.match(await page.title(), /HitSave/);
  assert.equal(await page.locator("h1").textContent(), "HitSave");
  assert.ok(await page.getByLabel("Email").isVisible());
});

test("the waitlist form posts through to the API", async () => {
  await page.goto(webUrl);
  await page.getByLabel("Email").fill(email);
  await page.getByRole("button", { name: "Join" }).click();
  const status = page.getByRole("status");
  await status.waitFor({ timeout: 10_000 });
  assert.match(await status.textContent(), /You're on the list/);

  // The same address again: the API says it is already there.
  await page.getByLabel("Email").fill(email.toUpperCase());
  await page.getByRole("button", { name: "Join" }).click();
  await page.getByText("already on the list").waitFor({ timeout: 10_000 });
});

test("the status page shows the web and API versions", async () => {
  const res = await page.goto(`${webUrl}/status`);
  assert.equal(res.status(), 200);
  const web = await page.getByTestId("web-version").textContent();
  const api = await page.getByTestId("api-version").textContent();
  assert.match(web, /^\d+\.\d+\.\d+ \(release /);
  assert.match(api, /^\d+\.\d+\.\d+ \(release /);
});
