/**
 * The same plain check as the API's: one @, something before it, a dotted domain after it,
 * no spaces, at most 254 characters. Returns the trimmed address or an error message.
 */
export function checkEmail(raw) {
  const email = String(raw ?? "").trim();
  if (!email) return { error: "Please enter your email address." };
  if (email.length > 254) return { error: "That email address is too long." };
  if (/\s/.test(email)) return { error: "An email address has no spaces." };
  const at = email.indexOf("@");
  if (at <= 0 || email.indexOf("@", at + 1) !== -1) {
    return { error: "That doesn't look like an email address." };
  }
  const labels = email.slice(at + 1).split(".");
  if (labels.length < 2 || labels.some((l) => l === "")) {
    return { error: "That doesn't look like an email address." };
  }
  return { email };
}
