// A real redis-server (Debian package) for integration tests: on a free loopback port, in a temp dir,
// without persistence unless asked (aof: true keeps data across restart()). Killed on stop() and when the
// test process exits.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RedisTestServer {
  url: string;
  port: number;
  stop(): Promise<void>;
  /** Stops and starts the server on the same port (and data dir: with aof, data survives). */
  restart(): Promise<void>;
  /** Stops the server but keeps its port and data dir for up(): an outage. */
  down(): Promise<void>;
  /**
   * SIGKILL, as a crash; up() restarts it. A killed process loses nothing the kernel already has, so to
   * model what `appendfsync everysec` loses when the machine goes down (up to a second of acknowledged
   * writes), `truncateAofTo` cuts the append-only file back to an earlier aofBytes().
   */
  kill(opts?: { truncateAofTo?: number }): Promise<void>;
  /** Size of the append-only file being appended to (Redis 7's *.incr.aof). */
  aofBytes(): number;
  up(): Promise<void>;
}

export interface RedisOptions {
  /**
   * Append-only file: `true` fsyncs every write (restart() keeps everything), 'everysec' once a second
   * (Redis's default; a kill loses up to a second of acknowledged writes).
   */
  aof?: boolean | 'everysec';
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Sends PING over a raw socket; true on +PONG. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = new Socket();
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.once('error', () => done(false));
    sock.once('data', (d) => done(d.toString().startsWith('+PONG')));
    sock.connect(port, '127.0.0.1', () => sock.write('PING\r\n'));
  });
}

export async function startRedis(opts: RedisOptions = {}): Promise<RedisTestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'kvrag-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const launch = async () => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''];
    const fsync = opts.aof === 'everysec' ? 'everysec' : 'always';
    args.push(...(opts.aof ? ['--appendonly', 'yes', '--appendfsync', fsync] : ['--appendonly', 'no']));
    // BullMQ needs keys to stay put: never evict.
    args.push('--maxmemory-policy', 'noeviction');
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    proc.stdout!.on('data', (d) => (output += d));
    proc.stderr!.on('data', (d) => (output += d));
    live.add(proc);
    child = proc;
    exited = new Promise((resolve) =>
      proc.once('exit', () => {
        live.delete(proc);
        resolve();
      }),
    );
    const deadline = Date.now() + 10_000;
    while (!(await ping(port))) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode}:\n${output}`);
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`redis-server did not answer PING on port ${port} within 10 s:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const halt = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    child = undefined;
  };

  /** The newest *.incr.aof of Redis 7's multi-part append-only file. */
  const incrAof = () => {
    const aofDir = join(dir, 'appendonlydir');
    const incr = readdirSync(aofDir)
      .map((f) => /^appendonly\.aof\.(\d+)\.incr\.aof$/.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .sort((a, b) => Number(b[1]) - Number(a[1]));
    if (!incr[0]) throw new Error(`no incremental append-only file in ${aofDir} (aof off?)`);
    return join(aofDir, incr[0][0]);
  };

  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await halt();
      await launch();
    },
    down: halt,
    async kill(o = {}) {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      child = undefined;
      if (o.truncateAofTo !== undefined) truncateSync(incrAof(), o.truncateAofTo);
    },
    aofBytes: () => statSync(incrAof()).size,
    up: launch,
  };
}
