// The runner credential (a shared secret from configuration): every runner route but /healthz requires
// `Authorization: Bearer <token>`. Two tokens are accepted, the current one and the one before the last
// rotation, so a rotation needs no downtime: give runners {current: new, previous: old}, then move the
// callers to the new token, then drop the old one. Comparison is constant-time: each accepted token and
// the presented one are hashed to 32 bytes and compared with timingSafeEqual, every accepted token always
// compared (no early exit), so neither a token's length nor its prefix shows in the timing.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { AppError } from '../../contracts/errors.ts';

export interface RunnerCredential {
  current: string;
  /** Still accepted during a rotation. */
  previous?: string;
}

/** A fresh random credential, for a runner built without one (in-process use: the caller reads it back). */
export function randomCredential(): RunnerCredential {
  return { current: randomBytes(32).toString('hex') };
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Whether `presented` is one of the accepted tokens, in time independent of where they differ. */
export function credentialAccepts(cred: RunnerCredential, presented: string): boolean {
  const got = digest(presented);
  let ok = false;
  for (const token of [cred.current, cred.previous]) {
    if (token === undefined) continue;
    // the comparison runs before `||`: every accepted token is compared
    ok = timingSafeEqual(digest(token), got) || ok;
  }
  return ok;
}

/** Hono middleware: 401 `unauthorized` (with WWW-Authenticate) unless the bearer token is accepted. */
export function requireRunnerCredential(cred: RunnerCredential): MiddlewareHandler {
  return async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    const m = /^Bearer ([\x21-\x7e]+)$/.exec(header);
    if (!m || !credentialAccepts(cred, m[1])) {
      c.header('www-authenticate', 'Bearer realm="kvrag-runner"');
      throw new AppError(
        'unauthorized',
        m ? 'the runner credential is not accepted' : 'send the runner credential as Authorization: Bearer',
      );
    }
    await next();
  };
}
