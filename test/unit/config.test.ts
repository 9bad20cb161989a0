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
      KVRAG_ADMIN_KEY: 'short',
    });
    expect(issues.map((i) => i.env).sort()).toEqual(['KVRAG_ADMIN_KEY', 'KVRAG_PORT', 'KVRAG_RUNNER_URLS']);
  });

  it('requires bucket and credentials when the blob store is s3', () => {
    const issues = issuesOf({ KVRAG_BLOB_STORE: 's3', KVRAG_S3_BUCKET: 'kvrag' });
    expect(issues.map((i) => i.env).sort()).toEqual(['KVRAG_S3_ACCESS_KEY_ID', 'KVRAG_S3_SECRET_ACCESS_KEY']);
    expect(issuesOf({ KVRAG_BLOB_STORE: 'gcs:bucket' })[0].env).toBe('KVRAG_BLOB_STORE');
  });
});
