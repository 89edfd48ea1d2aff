import { describe, expect, it } from "vitest";
import { checkEmail } from "./email.js";

describe("checkEmail", () => {
  it("accepts and trims ordinary addresses", () => {
    expect(checkEmail("  ada@example.com ")).toEqual({ email: "ada@example.com" });
    expect(checkEmail("a.b+tag@mail.example.co.uk")).toEqual({ email: "a.b+tag@mail.example.co.uk" });
  });

  it.each([
    [undefined, "Please enter"],
    ["", "Please enter"],
    ["ada", "doesn't look like"],
    ["@example.com", "doesn't look like"],
    ["ada@", "doesn't look like"],
    ["ada@example", "doesn't look like"],
    ["ada@@example.com", "doesn't look like"],
    ["ada@.com", "doesn't look like"],
    ["ada@exa mple.com", "no spaces"],
    [`${"a".repeat(250)}@example.com`, "too long"],
  ])("rejects %j", (input, message) => {
    expect(checkEmail(input).error).toContain(message);
  });
});
