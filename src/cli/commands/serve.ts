// `kvrag serve`: the embedded all-in-one process (npm start). Builds the services from configuration,
// serves the API, and shuts down gracefully on SIGINT/SIGTERM.
import { serve } from '@hono/node-server';
import { createApp } from '../../app.ts';
import { loadConfig } from '../../config.ts';
import { openNodeServices } from '../../node-services.ts';
import { parseOptions } from '../args.ts';
import type { Command } from '../command.ts';

export const command: Command = {
  summary: 'Run the API with embedded Postgres (PGlite), filesystem blobs, the in-process queue and engine.',
  usage: 'kvrag serve [--port N] [--host H] [--data-dir DIR]',
  async run(args) {
    const { values } = parseOptions(args, {
      port: { type: 'string' },
      host: { type: 'string' },
      'data-dir': { type: 'string' },
    });
    const config = loadConfig(process.env, {
      ...(values.port ? { port: values.port } : {}),
      ...(values.host ? { host: values.host } : {}),
      ...(values['data-dir'] ? { dataDir: values['data-dir'] } : {}),
    });
    const services = await openNodeServices(config);
    const app = createApp(services);
    const server = serve({ fetch: app.fetch, hostname: config.host, port: config.port });
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : config.port;
    services.log?.('info', 'kvrag listening', { url: `http://${config.host}:${port}` });

    await new Promise<void>((resolve) => {
      const stop = () => {
        services.log?.('info', 'shutting down');
        server.close(() => resolve());
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await services.close();
    return 0;
  },
};
