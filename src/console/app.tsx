// The console's shell: sign-in gate, navigation by hash (#/ask, #/collections/<id>, …), the page, and a
// polite live region pages use to announce what happened. A tenant key sees its collections, documents,
// search, ask and the runners; the admin key sees tenants (and their keys) and the runners.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { session, UNAUTHORIZED_EVENT, whoIs } from './api.ts';
import { AskPage } from './pages/ask.tsx';
import { CollectionsPage } from './pages/collections.tsx';
import { DocumentsPage } from './pages/documents.tsx';
import { RunnersPage } from './pages/runners.tsx';
import { SearchPage } from './pages/search.tsx';
import { SignIn } from './pages/sign-in.tsx';
import { TenantsPage } from './pages/tenants.tsx';
import { type Role, type Shell, ShellContext } from './shell.ts';

const NAV: Record<Role, { path: string; label: string }[]> = {
  tenant: [
    { path: 'collections', label: 'Collections' },
    { path: 'search', label: 'Search' },
    { path: 'ask', label: 'Ask' },
    { path: 'runners', label: 'Runners' },
  ],
  admin: [
    { path: 'tenants', label: 'Tenants' },
    { path: 'runners', label: 'Runners' },
  ],
};

function currentRoute(): string[] {
  return location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
}

export function App() {
  const [role, setRole] = useState<Role | null>(null);
  const [checking, setChecking] = useState(session.key() !== null);
  const [route, setRoute] = useState(currentRoute);
  const [status, setStatus] = useState('');
  const main = useRef<HTMLElement>(null);

  useEffect(() => {
    const onHash = () => setRoute(currentRoute());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);

  // a key already in this tab's session: find out again what it is (it may have been revoked)
  useEffect(() => {
    const key = session.key();
    if (!key) return;
    whoIs(key)
      .then(setRole)
      .catch(() => session.clear())
      .finally(() => setChecking(false));
  }, []);

  // the API refused this tab's key (revoked since sign-in): back to the sign-in form, saying why
  useEffect(() => {
    const onRefused = () => {
      session.clear();
      setRole(null);
      setStatus('The API refused this key (revoked or deleted?): sign in again.');
    };
    addEventListener(UNAUTHORIZED_EVENT, onRefused);
    return () => removeEventListener(UNAUTHORIZED_EVENT, onRefused);
  }, []);

  // an announcement stays for a while, then the status line clears
  useEffect(() => {
    if (!status) return;
    const t = setTimeout(() => setStatus(''), 10_000);
    return () => clearTimeout(t);
  }, [status]);

  // a new page: move focus to its heading, so keyboard and screen reader users start there
  useEffect(() => {
    main.current?.querySelector<HTMLElement>('h1')?.focus();
  }, [route[0], role]);

  const signedIn = useCallback(async (key: string) => {
    const r = await whoIs(key);
    session.set(key);
    setRole(r);
    location.hash = `#/${NAV[r][0].path}`;
  }, []);

  const shell: Shell = {
    announce: setStatus,
    switchKey: signedIn,
  };

  const signOut = () => {
    session.clear();
    setRole(null);
    setStatus('Signed out.');
    location.hash = '';
  };

  if (checking) return <p class="loading">Loading…</p>;
  if (!role)
    return (
      <ShellContext.Provider value={shell}>
        <SignIn onSignedIn={signedIn} notice={status} />
      </ShellContext.Provider>
    );

  const nav = NAV[role];
  const page = nav.some((n) => n.path === route[0]) || route[0] === 'documents' ? route[0] : nav[0].path;
  return (
    <ShellContext.Provider value={shell}>
      <button
        type="button"
        class="skip"
        onClick={() => main.current?.querySelector<HTMLElement>('h1')?.focus()}
      >
        Skip to content
      </button>
      <header class="top">
        <span class="brand">kvrag</span>
        <nav aria-label="Console">
          <ul>
            {nav.map((n) => (
              <li key={n.path}>
                <a
                  href={`#/${n.path}`}
                  aria-current={
                    page === n.path || (page === 'documents' && n.path === 'collections') ? 'page' : undefined
                  }
                >
                  {n.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span class="who">{role === 'admin' ? 'admin key' : 'tenant key'}</span>
        <button type="button" class="ghost" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main id="main" ref={main}>
        {page === 'collections' && <CollectionsPage />}
        {page === 'documents' && <DocumentsPage collectionId={route[1] ?? ''} />}
        {page === 'search' && <SearchPage collectionId={route[1]} />}
        {page === 'ask' && <AskPage collectionId={route[1]} />}
        {page === 'runners' && <RunnersPage role={role} />}
        {page === 'tenants' && <TenantsPage />}
      </main>
      <p class="status-line" role="status" aria-live="polite">
        {status}
      </p>
    </ShellContext.Provider>
  );
}
