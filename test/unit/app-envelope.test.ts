import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { AppError } from '../../contracts/errors.ts';
import type { Services } from '../../src/services.ts';

function services(readiness: Services['readiness'] = {}): Services {
  return { config: loadConfig({}), readiness };
}

describe('app skeleton', () => {
  it('answers /healthz and echoes a valid request id', async () => {
    const res = await createApp(services()).request('/healthz', { headers: { 'x-request-id': 'abc-123' } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
    expect(res.headers.get('x-request-id')).toBe('abc-123');
  });

  it('replaces a hostile request id with a fresh one', async () => {
    const res = await createApp(services()).request('/healthz', {
      headers: { 'x-request-id': 'a b <script>' },
    });
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('names each failing readiness check and answers 503; why it failed goes to the log only', async () => {
    const logged: { msg: string; fields?: Record<string, unknown> }[] = [];
    const app = createApp({
      ...services({
        database: async () => {},
        queue: async () => {
          throw new Error('connect ECONNREFUSED 10.20.30.40:6379 (redis down)');
        },
      }),
      log: (_level, msg, fields) => logged.push({ msg, fields }),
    });
    const res = await app.request('/readyz');
    expect(res.status).toBe(503);
    const text = await res.text();
    expect(JSON.parse(text)).toEqual({ status: 'not_ready', checks: { database: 'ok', queue: 'error' } });
    expect(text).not.toContain('10.20.30.40');
    expect(logged).toContainEqual({
      msg: 'readiness check failed',
      fields: expect.objectContaining({ check: 'queue', err: expect.stringContaining('10.20.30.40') }),
    });
  });

  it('answers unknown routes with the error envelope', async () => {
    const res = await createApp(services()).request('/v1/nothing');
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: { code: string; request_id: string } };
    expect(body.error.code).toBe('not_found');
    expect(body.error.request_id).toBe(res.headers.get('x-request-id'));
  });

  it('maps thrown errors to statuses and hides internal details', async () => {
    const app = createApp(services());
    const extra = new Hono();
    extra.get('/conflict', () => {
      throw new AppError('conflict', 'already exists');
    });
    extra.get('/boom', () => {
      throw new Error('secret stack detail');
    });
    app.route('/t', extra as never);
    const c = await app.request('/t/conflict');
    expect(c.status).toBe(409);
    expect(((await c.json()) as { error: { message: string } }).error.message).toBe('already exists');
    const b = await app.request('/t/boom');
    expect(b.status).toBe(500);
    const body = (await b.json()) as { error: { code: string; message: string; retryable: boolean } };
    expect(body.error).toMatchObject({ code: 'internal', message: 'internal error', retryable: false });
  });
});
