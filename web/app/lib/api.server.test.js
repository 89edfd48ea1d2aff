import { describe, expect, it } from "vitest";
import { apiUrl, waitlistOutcome } from "./api.server.js";

describe("apiUrl", () => {
  it("defaults to the API on localhost and drops trailing slashes", () => {
    expect(apiUrl({})).toBe("http://localhost:8080");
    expect(apiUrl({ API_URL: "http://api:8080//" })).toBe("http://api:8080");
  });
});

describe("waitlistOutcome", () => {
  it("tells a new sign-up from a repeated one", () => {
    expect(waitlistOutcome(201, {})).toEqual({ ok: true, message: expect.stringContaining("on the list") });
    expect(waitlistOutcome(200, {})).toEqual({ ok: true, message: expect.stringContaining("already") });
  });

  it("shows the API's validation message", () => {
    expect(waitlistOutcome(400, { error: "email must contain @" })).toEqual({
      ok: false,
      message: "email must contain @",
    });
  });

  it("hides server failures and unreachable APIs behind a retry message", () => {
    for (const [status, body] of [[500, { error: "internal" }], [503, null], [0, null], [400, null]]) {
      const outcome = waitlistOutcome(status, body);
      expect(outcome.ok).toBe(false);
      expect(outcome.message).toContain("try again");
    }
  });
});
