/**
 * Calls from the web server to the HitSave API. Server-only (the `.server` suffix keeps it out
 * of the browser bundle): the browser never talks to the API for these.
 */

const TIMEOUT_MS = 5000;

export function apiUrl(env = process.env) {
  return (env.API_URL || "http://localhost:8080").replace(/\/+$/, "");
}

/** What the person sees after the API answered a waitlist request. */
export function waitlistOutcome(status, body) {
  if (status === 201) return { ok: true, message: "You're on the list! We'll be in touch." };
  if (status === 200) return { ok: true, message: "You're already on the list. See you soon!" };
  if (status === 400 && body && typeof body.error === "string") {
    return { ok: false, message: body.error };
  }
  return { ok: false, message: "Something went wrong on our side. Please try again shortly." };
}

export async function joinWaitlist(email) {
  let res;
  try {
    res = await fetch(`${apiUrl()}/waitlist`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email }),
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (err) {
    console.error(`waitlist: the API at ${apiUrl()} did not answer: ${err.message}`);
    return waitlistOutcome(0, null);
  }
  const body = await res.json().catch(() => null);
  return waitlistOutcome(res.status, body);
}

/** The API's /health document, or an error string when it cannot be reached. */
export async function apiHealth() {
  try {
    const res = await fetch(`${apiUrl()}/health`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (!res.ok) return { error: `the API answered ${res.status}` };
    return { health: await res.json() };
  } catch (err) {
    return { error: `the API did not answer (${err.message})` };
  }
}
