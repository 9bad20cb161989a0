// Runs `kvrag serve` (or `npm start`) as a child process and waits for its "kvrag listening" log line;
// runs one `kvrag` CLI command to its exit; calls a served API with JSON.
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const KVRAG_BIN = resolve(REPO_ROOT, 'bin/kvrag.js');
/** The test process's environment without any KVRAG_* setting: only what a test passes applies. */
export const cleanEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !k.startsWith('KVRAG_')),
);

export interface ServeProcess {
  child: ChildProcess;
  /** The API's base URL once listening; rejects when the process exits first. */
  url: Promise<string>;
  stderr(): string;
}

/** Spawns `node bin/kvrag.js serve` (default) or `command` with the clean environment plus `env`. */
export function spawnServe(opts: {
  cwd: string;
  env: Record<string, string>;
  command?: { file: string; args: string[]; detached?: boolean };
}): ServeProcess {
  const cmd = opts.command ?? { file: process.execPath, args: [KVRAG_BIN, 'serve'] };
  const child = spawn(cmd.file, cmd.args, {
    cwd: opts.cwd,
    env: { ...cleanEnv, ...opts.env },
    stdio: 'pipe',
    detached: cmd.detached ?? false,
  });
  let stderr = '';
  const url = new Promise<string>((res, rej) => {
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = stderr.match(/"msg":"kvrag listening".*?"url":"([^"]+)"/);
      if (m) res(m[1]);
    });
    child.once('exit', (code) => rej(new Error(`serve exited with ${code}: ${stderr}`)));
  });
  url.catch(() => {}); // awaited only by tests that expect the server to come up
  return { child, url, stderr: () => stderr };
}

/** SIGTERM and wait for the exit (no-op when it already exited). */
export async function stopServe(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null) return;
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
}

/** Runs `node bin/kvrag.js ...args` with the clean environment to its exit: its code, stdout and stderr. */
export function runKvrag(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((done) => {
    let out = '';
    let err = '';
    const p = spawn(process.execPath, [KVRAG_BIN, ...args], {
      env: cleanEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    p.stdout?.on('data', (d) => {
      out += d;
    });
    p.stderr?.on('data', (d) => {
      err += d;
    });
    p.once('exit', (code) => done({ code, out, err }));
  });
}

/** One JSON request to a served API with a Bearer key: the status and the parsed body. */
export async function callJson<T>(url: string, key: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}
