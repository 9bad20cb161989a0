// Steps 2–5 of the GPU check, started by bench/gpu-check.sh once step 1 made the GPU usable: runs the
// plan (plan.ts) step by step as child processes, each under its time limit and all under one budget,
// and keeps one JSON report (gpu-check.json in the output folder) up to date after every step, so a run
// cut short still leaves what it measured. Children's output goes to this process's stdout (the shell
// script tees it into gpu-check.log). Exit code 0 when every step that ran passed.
//
//   node bench/gpu-check/run.ts --out DIR --work DIR --setup FILE [--dry-run] [--budget-s 420]
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gpuCheckPlan, type StepSpec } from './plan.ts';
import { peerAvailability } from './peers.ts';
import { summarise } from './summary.ts';

export type StepStatus = 'passed' | 'failed' | 'timed-out' | 'not-run' | 'skipped';

export interface StepRecord {
  id: string;
  part: number;
  title: string;
  command: string;
  status: StepStatus;
  reason?: string;
  seconds?: number;
  exitCode?: number | null;
  result?: unknown;
}

const { values } = parseArgs({
  options: {
    out: { type: 'string' },
    work: { type: 'string' },
    setup: { type: 'string' },
    'dry-run': { type: 'boolean', default: false },
    'budget-s': { type: 'string', default: '420' },
  },
});
if (!values.out || !values.work || !values.setup) {
  console.error('usage: run.ts --out DIR --work DIR --setup FILE [--dry-run] [--budget-s N]');
  process.exit(2);
}
const out = values.out;
const dryRun = values['dry-run']!;
const budgetS = Number(values['budget-s']);
const t0 = Date.now();
const deadline = t0 + budgetS * 1000;

/** step 1's facts: `key=value` lines written by the shell script (a repeated key becomes a list) */
function readSetup(file: string): Record<string, string | string[]> {
  const facts: Record<string, string | string[]> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const i = line.indexOf('=');
    if (i <= 0) continue;
    const [k, v] = [line.slice(0, i), line.slice(i + 1)];
    const prev = facts[k];
    facts[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return facts;
}

const setup = readSetup(values.setup);
const carryManifest = join(String(setup.carry_dir ?? '.gpu-carry'), 'MANIFEST.json');
const peers = peerAvailability(dryRun, existsSync(carryManifest) ? carryManifest : null, Boolean(setup.icd));
const vitestJson = join(out, 'parity.json');
const plan = gpuCheckPlan({ dryRun, work: values.work, vitestJson, peers });

const records: StepRecord[] = [
  {
    id: 'setup',
    part: 1,
    title: 'make the GPU usable for Dawn: loaders, the NVIDIA Vulkan ICD, node and node_modules',
    command: 'bench/gpu-check.sh',
    status: setup.status === 'passed' ? 'passed' : 'failed',
    result: setup,
  },
];

const report = () => ({
  kind: 'kvrag-gpu-check',
  version: 1,
  dryRun,
  adapterMode: process.env.KVRAG_WEBGPU_ADAPTER ?? 'auto',
  startedAt: new Date(t0).toISOString(),
  elapsedS: (Date.now() - t0) / 1000,
  budgetS,
  host: {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: availableParallelism(),
    memoryGiB: totalmem() / 2 ** 30,
    kernel: release(),
    node: process.version,
  },
  steps: records,
  summary: summarise(records),
});

function save(): void {
  const file = join(out, 'gpu-check.json');
  writeFileSync(`${file}.tmp`, `${JSON.stringify(report(), null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
}

/** Environment of the children: ours, without a parent vitest's variables (the dry run runs inside one). */
function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('VITEST') || k === 'TEST') delete env[k];
  return env;
}

/** Runs one child under a time limit (its whole process group is killed at the limit). */
function runChild(
  argv: string[],
  timeoutS: number,
): Promise<{ code: number | null; timedOut: boolean; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, argv, {
      env: childEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let timedOut = false;
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
      process.stdout.write(b);
    });
    child.stderr.on('data', (b: Buffer) => process.stdout.write(b));
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {}
    }, timeoutS * 1000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, timedOut, stdout });
    });
  });
}

function lastJsonLine(stdout: string): unknown {
  const line = stdout
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('{'));
  return line === undefined ? undefined : JSON.parse(line);
}

/** vitest's JSON report, reduced to counts and the failures' names and first message lines. */
function parityResult(file: string) {
  if (!existsSync(file)) return undefined;
  const r = JSON.parse(readFileSync(file, 'utf8')) as {
    numTotalTests: number;
    numPassedTests: number;
    numFailedTests: number;
    numPendingTests: number;
    testResults: {
      name: string;
      assertionResults: { fullName: string; status: string; failureMessages: string[] }[];
    }[];
  };
  return {
    total: r.numTotalTests,
    passed: r.numPassedTests,
    failed: r.numFailedTests,
    skipped: r.numPendingTests,
    files: r.testResults.map((f) => f.name.replace(`${process.cwd()}/`, '')),
    failures: r.testResults.flatMap((f) =>
      f.assertionResults
        .filter((a) => a.status === 'failed')
        .map((a) => ({
          test: a.fullName,
          message: (a.failureMessages[0] ?? '').split('\n').slice(0, 3).join(' '),
        })),
    ),
  };
}

async function runStep(s: StepSpec): Promise<StepRecord> {
  const rec: StepRecord = {
    id: s.id,
    part: s.part,
    title: s.title,
    command: `node ${s.argv.join(' ')}`,
    status: 'skipped',
  };
  if (s.notRun) return { ...rec, status: 'not-run', reason: s.notRun };
  const unmet = (s.needs ?? []).filter((id) => records.find((r) => r.id === id)?.status !== 'passed');
  if (unmet.length) return { ...rec, reason: `needs ${unmet.join(', ')}, which did not pass` };
  const left = (deadline - Date.now()) / 1000;
  if (left < 15)
    return { ...rec, reason: `time budget: ${Math.max(0, left).toFixed(0)} s of ${budgetS} s left` };
  const limit = Math.min(s.timeoutS, left);
  process.stdout.write(`\n=== [gpu-check] step ${s.part} ${s.id}: ${s.title}\n$ ${rec.command}\n`);
  const t = Date.now();
  const { code, timedOut, stdout } = await runChild(s.argv, limit);
  rec.seconds = (Date.now() - t) / 1000;
  rec.exitCode = code;
  try {
    rec.result = s.output === 'vitest' ? parityResult(vitestJson) : lastJsonLine(stdout);
  } catch (err) {
    rec.reason = `output not readable: ${(err as Error).message}`;
  }
  if (timedOut) return { ...rec, status: 'timed-out', reason: `stopped at its ${limit.toFixed(0)} s limit` };
  if (code !== 0 || rec.result === undefined)
    return {
      ...rec,
      status: 'failed',
      reason: rec.reason ?? `exit code ${code}${rec.result === undefined ? ', no result' : ''}`,
    };
  return { ...rec, status: 'passed' };
}

save();
for (const s of plan) {
  records.push(await runStep(s));
  save();
  const r = records.at(-1)!;
  process.stdout.write(`=== [gpu-check] ${r.id}: ${r.status}${r.reason ? ` (${r.reason})` : ''}\n`);
}
const { ok } = summarise(records);
process.stdout.write(
  `\n=== [gpu-check] ${ok ? 'done' : 'done with failures'}: ${join(out, 'gpu-check.json')}\n`,
);
process.exit(ok ? 0 : 1);
