import { type FormEvent, type ReactNode, useId, useState } from "react";
import type { Refusal } from "../lib/auth.js";

export interface SignInProps {
  /** Why sign-in is asked for: the gateway closed with 4001, 4003 or 1008. */
  readonly refusal: Refusal;
  readonly onToken: (token: string) => void;
}

/** Why the gateway refused us, and the access-token form (the token is kept in this tab's sessionStorage only). */
export function SignIn({ refusal, onToken }: SignInProps): ReactNode {
  const [value, setValue] = useState("");
  const id = useId();
  const submit = (e: FormEvent): void => {
    e.preventDefault();
    const token = value.trim();
    if (token !== "") onToken(token);
  };
  return (
    <section className="panel sign-in" data-testid="sign-in" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>{refusal.title}</h2>
      <p className="error" role="alert" data-testid="refusal" data-code={refusal.code}>
        {refusal.detail}
      </p>
      <form onSubmit={submit}>
        <label htmlFor={`${id}-token`}>Access token (JWT)</label>
        <input
          id={`${id}-token`}
          type="password"
          autoComplete="off"
          spellCheck={false}
          value={value}
          onChange={(e) => {
            setValue(e.target.value);
          }}
          placeholder="eyJhbGciOi…"
        />
        <p className="hint">Kept in this tab only (sessionStorage); closing the tab forgets it.</p>
        <div className="actions">
          <button type="submit" disabled={value.trim() === ""}>
            Sign in
          </button>
        </div>
      </form>
    </section>
  );
}
