// How an ingestion failure reads on its document: the message of the error that stopped it, or, when the
// queue's last try of a transient fault (database, blob store, embedder away) failed, that message behind
// a "gave up after N tries" prefix, so a reader can tell a broken file from a service fault.
const EXHAUSTED = /^gave up after \d+ tries: /;

export const retriesExhausted = (attempts: number, message: string) =>
  `gave up after ${attempts} tries: ${message}`;

export const isRetriesExhausted = (message: string) => EXHAUSTED.test(message);
