// Tenants and their API keys (admin key only): create a tenant, create a key (shown once, with a button
// to sign in with it in this tab), revoke keys, delete a tenant and everything it owns after confirmation.
import { useState } from 'preact/hooks';
import { type ApiKeyObject, call, type NewApiKeyObject, type Page, type TenantObject } from '../api.ts';
import { errorText, useShell } from '../shell.ts';
import { when } from '../format.ts';
import { Confirm } from '../parts/dialog.tsx';
import { usePoll } from '../parts/use-poll.ts';

export function TenantsPage() {
  const { announce } = useShell();
  const [tenants, setTenants] = useState<TenantObject[] | null>(null);
  const [selected, setSelected] = useState<TenantObject | null>(null);
  const [name, setName] = useState('');
  const [error, setError] = useState('');
  const [deleting, setDeleting] = useState<TenantObject | null>(null);
  const reload = usePoll(async () => {
    try {
      setTenants((await call<Page<TenantObject>>('GET', '/v1/admin/tenants?limit=100')).data);
    } catch (e) {
      setError(errorText(e));
    }
  }, 10_000);

  const create = async (e: Event) => {
    e.preventDefault();
    setError('');
    try {
      const t = await call<TenantObject>('POST', '/v1/admin/tenants', { name: name.trim() });
      setName('');
      announce(`Tenant ${t.name} created.`);
      await reload();
      setSelected(t);
    } catch (err) {
      setError(errorText(err));
    }
  };

  return (
    <section aria-labelledby="tenants-h">
      <h1 id="tenants-h" tabIndex={-1}>
        Tenants
      </h1>
      <form class="card form-grid" onSubmit={create}>
        <h2 class="full">New tenant</h2>
        <div class="field wide">
          <label for="tenant-name">Name</label>
          <input
            id="tenant-name"
            required
            maxLength={200}
            value={name}
            onInput={(e) => setName(e.currentTarget.value)}
          />
        </div>
        <div class="field end">
          <button type="submit" class="primary">
            Create tenant
          </button>
        </div>
        {error && (
          <p class="error full" role="alert">
            {error}
          </p>
        )}
      </form>
      {tenants === null ? (
        <p>Loading…</p>
      ) : (
        <div class="table-wrap">
          <table>
            <caption>Tenants</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Id</th>
                <th scope="col">Created</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {tenants.map((t) => (
                <tr key={t.id} aria-selected={selected?.id === t.id}>
                  <th scope="row">{t.name}</th>
                  <td>
                    <code>{t.id}</code>
                  </td>
                  <td>{when(t.created_at)}</td>
                  <td class="actions-cell">
                    <button
                      type="button"
                      class="small"
                      onClick={() => setSelected(t)}
                      aria-label={`API keys of ${t.name}`}
                    >
                      Keys
                    </button>
                    <button
                      type="button"
                      class="danger small"
                      onClick={() => setDeleting(t)}
                      aria-label={`Delete tenant ${t.name}`}
                    >
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {selected && <Keys key={selected.id} tenant={selected} />}
      {deleting && (
        <Confirm
          title={`Delete tenant ${deleting.name}?`}
          confirmLabel="Delete tenant"
          onClose={() => setDeleting(null)}
          onConfirm={async () => {
            try {
              await call('DELETE', `/v1/admin/tenants/${deleting.id}`);
              announce(`Tenant ${deleting.name} deleted.`);
              if (selected?.id === deleting.id) setSelected(null);
            } catch (e) {
              announce(`Could not delete ${deleting.name}: ${errorText(e)}`);
            }
            await reload();
          }}
        >
          <p>Its keys, collections, documents, chunks and stored artifacts all go. This cannot be undone.</p>
        </Confirm>
      )}
    </section>
  );
}

function Keys(props: { tenant: TenantObject }) {
  const t = props.tenant;
  const { announce, switchKey } = useShell();
  const [keys, setKeys] = useState<ApiKeyObject[] | null>(null);
  const [made, setMade] = useState<NewApiKeyObject | null>(null);
  const [keyName, setKeyName] = useState('console');
  const [revoking, setRevoking] = useState<ApiKeyObject | null>(null);
  const [error, setError] = useState('');
  const reload = usePoll(async () => {
    try {
      setKeys((await call<Page<ApiKeyObject>>('GET', `/v1/admin/tenants/${t.id}/keys?limit=100`)).data);
    } catch (e) {
      setError(errorText(e));
    }
  }, 10_000);
  const create = async (e: Event) => {
    e.preventDefault();
    try {
      const k = await call<NewApiKeyObject>('POST', `/v1/admin/tenants/${t.id}/keys`, {
        name: keyName.trim(),
      });
      setMade(k);
      announce(`Key ${k.prefix}… created for ${t.name}; it is shown once.`);
      await reload();
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <section class="card" aria-labelledby="keys-h">
      <h2 id="keys-h">API keys of {t.name}</h2>
      <form class="row" onSubmit={create}>
        <div class="field">
          <label for="key-name">Key name</label>
          <input
            id="key-name"
            required
            maxLength={200}
            value={keyName}
            onInput={(e) => setKeyName(e.currentTarget.value)}
          />
        </div>
        <button type="submit" class="primary">
          Create key
        </button>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {made && (
        <section class="new-key" aria-label="New key">
          <p>This key is shown once. Copy it now:</p>
          <p>
            <code class="key" data-testid="new-key">
              {made.key}
            </code>
          </p>
          <div class="row">
            <button
              type="button"
              onClick={() => navigator.clipboard?.writeText(made.key).then(() => announce('Key copied.'))}
            >
              Copy
            </button>
            <button type="button" onClick={() => void switchKey(made.key)}>
              Sign in with this key
            </button>
          </div>
        </section>
      )}
      {keys && (
        <div class="table-wrap">
          <table>
            <caption class="sr-only">Keys of {t.name}</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Prefix</th>
                <th scope="col">Created</th>
                <th scope="col">State</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {keys.map((k) => (
                <tr key={k.id}>
                  <th scope="row">{k.name}</th>
                  <td>
                    <code>{k.prefix}…</code>
                  </td>
                  <td>{when(k.created_at)}</td>
                  <td>{k.revoked_at ? `revoked ${when(k.revoked_at)}` : 'active'}</td>
                  <td>
                    {!k.revoked_at && (
                      <button
                        type="button"
                        class="danger small"
                        onClick={() => setRevoking(k)}
                        aria-label={`Revoke key ${k.name} (${k.prefix})`}
                      >
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {revoking && (
        <Confirm
          title={`Revoke key ${revoking.prefix}…?`}
          confirmLabel="Revoke key"
          onClose={() => setRevoking(null)}
          onConfirm={async () => {
            await call('DELETE', `/v1/admin/tenants/${t.id}/keys/${revoking.id}`).catch((e) =>
              announce(`Could not revoke: ${errorText(e)}`),
            );
            announce(`Key ${revoking.prefix}… revoked.`);
            await reload();
          }}
        >
          <p>Requests with this key are refused from now on.</p>
        </Confirm>
      )}
    </section>
  );
}
