// How an ingestion failure reads on its document: the message of the error that stopped it (a file that
// cannot be indexed), or, when a service fault kept it from finishing until the reconciler
// (workers/reconciler.ts) gave up re-driving it, that reason behind a "not ready after N re-drives"
// prefix, so a reader can tell a broken file from a service fault.
const EXHAUSTED = /^not ready after \d+ re-drives: /;

export const retriesExhausted = (redrives: number, reason: string) =>
  `not ready after ${redrives} re-drives: ${reason}`;

export const isRetriesExhausted = (message: string) => EXHAUSTED.test(message);
