// What the API needs from the outside world, as interfaces; entries (Node serve, Workers) build it.
import type { Config } from './config.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Log = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

export interface Services {
  config: Config;
  /** Readiness checks by component name (database, blobs, queue, runner); each throws when not ready. */
  readiness: Record<string, () => Promise<void>>;
  log?: Log;
}

export type AppEnv = { Variables: { requestId: string; services: Services } };
