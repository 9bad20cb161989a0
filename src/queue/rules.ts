// Rules both queue implementations share, so a job that works embedded works on BullMQ. Job ids: BullMQ
// refuses ids that are integers (they collide with its own counter) and ids containing ":" (its Redis key
// separator). Backoff: exponential, as BullMQ computes it.

const ID = /^[A-Za-z0-9._~@+=-]{1,256}$/;

/** Throws a plain Error (a programming error, not bad user input) when the id cannot be a job id. */
export function validateJobId(id: string): string {
  if (!ID.test(id)) {
    throw new Error(`invalid job id ${JSON.stringify(id)}: 1-256 characters of A-Z a-z 0-9 . _ ~ @ + = -`);
  }
  if (/^[0-9]+$/.test(id)) throw new Error(`invalid job id ${JSON.stringify(id)}: must not be an integer`);
  return id;
}

/** Queue names become Redis key parts: same alphabet, no ':'. */
export function validateQueueName(name: string): string {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new Error(`invalid queue name ${JSON.stringify(name)}`);
  return name;
}

/** Delay before retry n (1-based count of failed tries so far): base · 2^(n−1), as BullMQ's exponential. */
export function backoffDelay(baseMs: number, failedTries: number): number {
  return Math.round(baseMs * 2 ** Math.max(0, failedTries - 1));
}

export const DEFAULT_ATTEMPTS = 5;
export const DEFAULT_BACKOFF_MS = 1000;
