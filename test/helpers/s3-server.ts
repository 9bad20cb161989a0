// s3rver (the S3 protocol over a local directory) on a free loopback port with one bucket created, in a
// child process (see s3rver-process.ts for why) that is killed on stop() and when this process exits.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export interface S3TestServer {
  /** `http://127.0.0.1:<port>`: use with forcePathStyle. */
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  stop(): Promise<void>;
}

/** s3rver's fixed credentials. */
const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
const SCRIPT = new URL('./s3rver-process.ts', import.meta.url).pathname;

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export async function startS3(bucket = 'kvrag-test'): Promise<S3TestServer> {
  let stopped = false;
  const dir = await mkdtemp(join(tmpdir(), 'kvrag-s3rver-'));
  const child = spawn(process.execPath, ['--openssl-legacy-provider', SCRIPT, dir, bucket], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // a server that dies under a test fails it with ECONNREFUSED: say why it died
  child.once('exit', (code, signal) => {
    if (!stopped) console.error(`s3rver exited during the test (${signal ?? code})\n${stderr}`);
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s3rver did not start in 15 s\n${stderr}`)), 15_000);
    child.once('exit', (code) => reject(new Error(`s3rver exited with ${code}\n${stderr}`)));
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      resolve((JSON.parse(line) as { port: number }).port);
    });
  }).catch(async (err) => {
    child.kill('SIGKILL');
    live.delete(child);
    await rm(dir, { recursive: true, force: true });
    throw err;
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    region: 'us-east-1',
    ...CREDENTIALS,
    async stop() {
      if (stopped) return;
      stopped = true;
      child.kill('SIGTERM');
      await exited;
      live.delete(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
