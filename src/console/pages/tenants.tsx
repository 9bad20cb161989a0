// Tenants and their API keys (admin key only): create a tenant, create a key (shown once, with a button
// to sign in with it in this tab), revoke keys, delete a tenant and everything it owns after confirmation.
import { useState } from 'preact/hooks';
import { type ApiKeyObject, call, type NewApiKeyObject, type Page, type TenantObject } from '../api.ts';
import { errorText, useShell } from '../shell.ts';
import { when } from '../format.ts';
import { DataTable, Loaded } from '../parts/data-table.tsx';
import { Confirm } from '../parts/dialog.tsx';
import { DangerButton, ErrorLine, Field } from '../parts/form-bits.tsx';
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
        <Field id="tenant-name" label="Name" class="wide">
          <input
            id="tenant-name"
            required
            maxLength={200}
            value={name}
            onInput={(e) => setName(e.currentTarget.value)}
          />
        </Field>
        <div class="field end">
          <button type="submit" class="primary">
            Create tenant
          </button>
        </div>
        <ErrorLine error={error} full />
      </form>
      <Loaded rows={tenants}>
        {(rows) => (
          <DataTable
            caption="Tenants"
            rows={rows}
            rowKey={(t) => t.id}
            rowAttrs={(t) => ({ 'aria-selected': selected?.id === t.id })}
            header={{ head: 'Name', cell: (t) => t.name }}
            columns={[
              { head: 'Id', cell: (t) => <code>{t.id}</code> },
              { head: 'Created', cell: (t) => when(t.created_at) },
            ]}
            actionsClass="actions-cell"
            actions={(t) => (
              <>
                <button
                  type="button"
                  class="small"
                  onClick={() => setSelected(t)}
                  aria-label={`API keys of ${t.name}`}
                >
                  Keys
                </button>
                <DangerButton label={`Delete tenant ${t.name}`} onClick={() => setDeleting(t)} />
              </>
            )}
          />
        )}
      </Loaded>
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
        <Field id="key-name" label="Key name">
          <input
            id="key-name"
            required
            maxLength={200}
            value={keyName}
            onInput={(e) => setKeyName(e.currentTarget.value)}
          />
        </Field>
        <button type="submit" class="primary">
          Create key
        </button>
      </form>
      <ErrorLine error={error} />
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
        <DataTable
          caption={`Keys of ${t.name}`}
          hiddenCaption
          rows={keys}
          rowKey={(k) => k.id}
          header={{ head: 'Name', cell: (k) => k.name }}
          columns={[
            { head: 'Prefix', cell: (k) => <code>{k.prefix}…</code> },
            { head: 'Created', cell: (k) => when(k.created_at) },
            { head: 'State', cell: (k) => (k.revoked_at ? `revoked ${when(k.revoked_at)}` : 'active') },
          ]}
          actions={(k) =>
            !k.revoked_at && (
              <DangerButton label={`Revoke key ${k.name} (${k.prefix})`} onClick={() => setRevoking(k)}>
                Revoke
              </DangerButton>
            )
          }
        />
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
