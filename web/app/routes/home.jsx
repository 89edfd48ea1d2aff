import { Form, useNavigation } from "react-router";
import { checkEmail } from "../lib/email.js";
import { joinWaitlist } from "../lib/api.server.js";

export function meta() {
  return [
    { title: "HitSave: never compute the same thing twice" },
    { name: "description", content: "HitSave caches the results of your functions, for your whole team." },
  ];
}

export async function action({ request }) {
  const form = await request.formData();
  const checked = checkEmail(form.get("email"));
  if (checked.error) return { ok: false, message: checked.error };
  return joinWaitlist(checked.email);
}

export default function Home({ actionData }) {
  const navigation = useNavigation();
  const sending = navigation.state === "submitting";
  return (
    <main className="page">
      <h1>HitSave</h1>
      <p className="lede">
        Never compute the same thing twice. HitSave remembers the results of your functions,
        so you and your team get them back instantly.
      </p>
      <section aria-labelledby="waitlist-title">
        <h2 id="waitlist-title">Join the waitlist</h2>
        <Form method="post" className="waitlist">
          <label htmlFor="email">Email</label>
          <input id="email" name="email" type="email" autoComplete="email" required
                 placeholder="you@example.com" />
          <button type="submit" disabled={sending}>{sending ? "Joining…" : "Join"}</button>
        </Form>
        {actionData && (
          <p role="status" className={actionData.ok ? "ok" : "error"}>{actionData.message}</p>
        )}
      </section>
      <footer><a href="/status">Status</a></footer>
    </main>
  );
}
