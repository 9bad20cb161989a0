// Sign in with an API key (a tenant's, or the operator's admin key). The key is kept in this tab's session
// storage only; the form never submits anywhere, so it never reaches a URL or the server's logs.
import { useState } from 'preact/hooks';
import { ApiError } from '../api.ts';
import { ErrorLine } from '../parts/form-bits.tsx';

export function SignIn(props: { onSignedIn: (key: string) => Promise<void>; notice?: string }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      await props.onSignedIn(key.trim());
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 401
          ? 'This key was refused: it is unknown, revoked or mistyped.'
          : err instanceof ApiError && err.status === 429
            ? `Too many failed attempts: ${err.message}`
            : `Could not sign in: ${(err as Error).message}`,
      );
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="sign-in" id="main">
      <h1 tabIndex={-1}>kvrag console</h1>
      <p>Sign in with a tenant API key, or with the admin key to manage tenants and keys.</p>
      <p class="notice" role="status">
        {props.notice}
      </p>
      <form onSubmit={submit} autocomplete="off">
        <label for="api-key">API key</label>
        <input
          id="api-key"
          name="api-key"
          type="password"
          required
          spellcheck={false}
          autocomplete="off"
          value={key}
          onInput={(e) => setKey(e.currentTarget.value)}
          aria-describedby={error ? 'sign-in-error' : undefined}
          aria-invalid={error ? true : undefined}
        />
        <button type="submit" class="primary" disabled={busy || key.trim() === ''}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        <ErrorLine id="sign-in-error" error={error} />
      </form>
      <p class="hint">The key stays in this browser tab (session storage) and is sent only to this server.</p>
    </main>
  );
}
