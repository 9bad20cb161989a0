import { describe, expect, it } from 'vitest';
import { blobStoreSpec, ConfigError, loadConfig } from '../../src/config.ts';

function issuesOf(env: Record<string, string>): ConfigError['issues'] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('has embedded defaults with no environment at all', () => {
    const c = loadConfig({});
    expect(c.port).toBe(8080);
    expect(c.databaseUrl).toBeUndefined();
    expect(c.redisUrl).toBeUndefined();
    expect(c.runnerUrls).toEqual([]);
    expect(blobStoreSpec(c)).toBe('fs:.kvrag/blobs');
  });

  it('reads and coerces settings from KVRAG_* variables', () => {
    const c = loadConfig({
      KVRAG_PORT: '9000',
      KVRAG_DATABASE_URL: 'postgres://u:p@db:5432/kvrag',
      KVRAG_REDIS_URL: 'redis://127.0.0.1:6379',
      KVRAG_RUNNER_URLS: 'http://r1:8081, http://r2:8081',
      KVRAG_RUNNER_TOKEN: 'a'.repeat(64),
      KVRAG_S3_FORCE_PATH_STYLE: 'true',
      KVRAG_BLOB_STORE: 'fs:/var/kvrag',
      KVRAG_KV_DTYPE: 'int4',
    });
    expect(c.port).toBe(9000);
    expect(c.kvDType).toBe('int4');
    expect(c.runnerUrls).toEqual(['http://r1:8081', 'http://r2:8081']);
    expect(c.s3ForcePathStyle).toBe(true);
    expect(blobStoreSpec(c)).toBe('fs:/var/kvrag');
  });

  it('treats empty strings as unset', () => {
    expect(loadConfig({ KVRAG_DATABASE_URL: '', KVRAG_PORT: ' ' }).port).toBe(8080);
  });

  it('names each invalid setting by its variable', () => {
    const issues = issuesOf({
      KVRAG_PORT: 'eighty',
      KVRAG_DATABASE_URL: 'mysql://x',
      KVRAG_LOG_LEVEL: 'loud',
      KVRAG_KV_DTYPE: 'int2',
    });
    expect(issues.map((i) => i.env).sort()).toEqual([
      'KVRAG_DATABASE_URL',
      'KVRAG_KV_DTYPE',
      'KVRAG_LOG_LEVEL',
      'KVRAG_PORT',
    ]);
    const msg = new ConfigError(issues).message;
    expect(msg).toContain('KVRAG_PORT');
    expect(msg).toContain('postgres: or postgresql:');
  });

  it('rejects out-of-range ports, bad runner URLs and a short admin key', () => {
    const issues = issuesOf({
      KVRAG_PORT: '70000',
      KVRAG_RUNNER_URLS: 'http://ok:1,ftp://no',
      KVRAG_RUNNER_TOKEN: 'b'.repeat(64),
      KVRAG_ADMIN_KEY: 'short',
    });
    expect(issues.map((i) => i.env).sort()).toEqual(['KVRAG_ADMIN_KEY', 'KVRAG_PORT', 'KVRAG_RUNNER_URLS']);
  });

  it('requires bucket and credentials when the blob store is s3', () => {
    const issues = issuesOf({ KVRAG_BLOB_STORE: 's3', KVRAG_S3_BUCKET: 'kvrag' });
    expect(issues.map((i) => i.env).sort()).toEqual(['KVRAG_S3_ACCESS_KEY_ID', 'KVRAG_S3_SECRET_ACCESS_KEY']);
    expect(issuesOf({ KVRAG_BLOB_STORE: 'gcs:bucket' })[0].env).toBe('KVRAG_BLOB_STORE');
  });

  it('runner credential: required with remote runners, 32+ printable characters; the runner binds loopback', () => {
    expect(issuesOf({ KVRAG_RUNNER_URLS: 'http://r1:8081' }).map((i) => i.env)).toEqual([
      'KVRAG_RUNNER_TOKEN',
    ]);
    expect(issuesOf({ KVRAG_RUNNER_TOKEN: 'too-short' })[0].env).toBe('KVRAG_RUNNER_TOKEN');
    expect(issuesOf({ KVRAG_RUNNER_TOKEN_PREVIOUS: `${'c'.repeat(40)} x` })[0].env).toBe(
      'KVRAG_RUNNER_TOKEN_PREVIOUS',
    );
    const c = loadConfig({ KVRAG_RUNNER_TOKEN: 'd'.repeat(40), KVRAG_RUNNER_TOKEN_PREVIOUS: 'e'.repeat(40) });
    expect([c.runnerToken, c.runnerTokenPrevious]).toEqual(['d'.repeat(40), 'e'.repeat(40)]);
    expect(loadConfig({}).runnerHost).toBe('127.0.0.1');
  });

  it('trusted proxy hops: false/true stay meaningful, a number is a hop count', () => {
    const hops = (v: string) => loadConfig({ KVRAG_TRUST_PROXY: v }).trustProxy;
    expect([hops('false'), hops('true'), hops('0'), hops('1'), hops('3')]).toEqual([0, 1, 0, 1, 3]);
    expect(loadConfig({}).trustProxy).toBe(0);
    expect(issuesOf({ KVRAG_TRUST_PROXY: 'maybe' })[0].env).toBe('KVRAG_TRUST_PROXY');
  });

  it('runner URL allow-list: scheme://host[:port] patterns only', () => {
    expect(
      loadConfig({ KVRAG_RUNNER_URL_ALLOWLIST: 'http://10.0.*.*:8081, https://*.runners.example' })
        .runnerUrlAllowlist,
    ).toEqual(['http://10.0.*.*:8081', 'https://*.runners.example']);
    expect(issuesOf({ KVRAG_RUNNER_URL_ALLOWLIST: 'http://ok:1/path' })[0].env).toBe(
      'KVRAG_RUNNER_URL_ALLOWLIST',
    );
  });
});
