// The eval's held-out episodes (gpu-runner/eval/episodes.ts) must be byte-identical to the trainer's
// Python generator (gpu-runner/tools/train/episodes.py, random.Random = MT19937): checked against a
// committed file the Python CLI wrote, and live against /usr/bin/python3 when it is present.
// Fixtures: /usr/bin/python3 gpu-runner/tools/train/episodes.py test/fixtures/eval/heldout-314159-512.jsonl 512 2 314159
// and the same with `-prose.jsonl ... 314159 prose` (filler from the committed evaluation prose).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  type Episode,
  episodePrompt,
  FACT_TYPES,
  type Filler,
  heldoutEpisodes,
  promptTokens,
  SYSTEM_TEXT,
  TOKENS,
} from '../../gpu-runner/eval/episodes.ts';
import { loadEvalProse } from '../../gpu-runner/eval/prose.ts';
import { PyRandom } from '../../gpu-runner/eval/py-random.ts';

const PY = '/usr/bin/python3';
const hasPython = () =>
  existsSync(PY) && spawnSync(PY, ['-c', 'import random'], { stdio: 'ignore' }).status === 0;

/** A Python episode line without the CLI's extra meta.kind, serialised like the TS episode. */
function canonical(line: string): string {
  const o = JSON.parse(line) as Episode & { meta: { kind?: string } };
  delete o.meta.kind;
  return JSON.stringify(o);
}

const prose = loadEvalProse().map((d) => d.lines);

function tsLines(seed: number, L: number, n: number, filler: Filler = 'lexicon'): string[] {
  return FACT_TYPES.flatMap((k) =>
    heldoutEpisodes(seed, k, L, n, filler, prose).map((e) => JSON.stringify(e)),
  );
}

describe('held-out episodes vs the Python generator', () => {
  it.each([
    ['lexicon', 'heldout-314159-512.jsonl'],
    ['prose', 'heldout-314159-512-prose.jsonl'],
  ] as const)(
    '%s filler: match the committed Python output for seed 314159 at 512 tokens, byte for byte',
    (filler, file) => {
      const py = readFileSync(`test/fixtures/eval/${file}`, 'utf8').trim().split('\n');
      expect(py).toHaveLength(2 * FACT_TYPES.length);
      expect(tsLines(314159, 512, 2, filler)).toEqual(py.map(canonical));
    },
  );

  it('a different seed gives different episodes (the comparison can fail)', () => {
    const py = readFileSync('test/fixtures/eval/heldout-314159-512.jsonl', 'utf8').trim().split('\n');
    expect(tsLines(314158, 512, 2)).not.toEqual(py.map(canonical));
  });

  describe.runIf(hasPython())('live, against /usr/bin/python3', () => {
    it('PyRandom draws what random.Random draws', () => {
      const script = [
        'import random',
        'r = random.Random("heldout-7-kv-full-2048")',
        'out = [r.random(), r.randint(100000, 999999), r.randrange(3), r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ"), r.getrandbits(32), r.randint(64, 512)]',
        'out += [r.randrange(1), r.randint(0, 0), r.randrange(1000003)]',
        'import json; print(json.dumps(out))',
      ].join('\n');
      const res = spawnSync(PY, ['-c', script], { encoding: 'utf8' });
      expect(res.status, res.stderr).toBe(0);
      const r = new PyRandom('heldout-7-kv-full-2048');
      const ts = [
        r.random(),
        r.randint(100000, 999999),
        r.randrange(3),
        r.choice([...'ABCDEFGHJKLMNPQRSTUVWXYZ']),
        r.getrandbits(32),
        r.randint(64, 512),
        r.randrange(1),
        r.randint(0, 0),
        r.randrange(1000003),
      ];
      expect(ts).toEqual(JSON.parse(res.stdout));
    });

    it.each([
      [314159, 2048, 'lexicon'],
      [11, 4096, 'lexicon'],
      [20261122, 512, 'lexicon'],
      [314159, 2048, 'prose'],
      [11, 4096, 'prose'],
    ] as const)('seed %i, %i tokens, %s filler: every suite byte-identical', (seed, L, filler) => {
      const script = [
        'import json, sys',
        'sys.path.insert(0, "gpu-runner/tools/train")',
        'from episodes import heldout_episodes, FACT_TYPES',
        'from prose import load_eval',
        'docs = [d.lines for d in load_eval()]',
        `for k in FACT_TYPES:`,
        `    for e in heldout_episodes(${seed}, k, ${L}, 3, "${filler}", docs): print(e.to_json())`,
      ].join('\n');
      const res = spawnSync(PY, ['-c', script], { encoding: 'utf8' });
      expect(res.status, res.stderr).toBe(0);
      expect(tsLines(seed, L, 3, filler)).toEqual(res.stdout.trim().split('\n').map(canonical));
    });
  });
});

describe('episode prompt (EPISODES.md layout)', () => {
  it('builds bos + system, one <|doc|> block per chunk, and the question turn as ids', () => {
    const [ep] = heldoutEpisodes(314159, 'kv', 512, 1);
    const p = episodePrompt(ep);
    const T = TOKENS;
    const bytes = (s: string) => [...Buffer.from(s)];
    expect(p.system).toEqual([T.bos, T.system, ...bytes(SYSTEM_TEXT), T.end]);
    expect(p.chunks).toHaveLength(ep.chunks.length);
    for (const [i, c] of p.chunks.entries()) expect(c).toEqual([T.doc, ...bytes(ep.chunks[i]), T.endDoc]);
    expect(p.question).toEqual([T.user, ...bytes(ep.qas[0].question), T.end, T.assistant]);
    expect(p.answer).toEqual(bytes(ep.qas[0].answer));
    expect(ep.qas[0].answer).toMatch(/^\d{6}$/);
    // the context (bos + system + chunks) is about the target length: chunks end on sentence
    // boundaries, so single short episodes stray (up to ~18% at 512) while the set's mean stays close
    const rel = heldoutEpisodes(314159, 'kv', 512, 40).map((e) => {
      const ep2 = episodePrompt(e);
      return (promptTokens(ep2) - ep2.question.length - 512) / 512;
    });
    expect(Math.abs(rel.reduce((a, x) => a + x, 0) / rel.length)).toBeLessThan(0.03);
    for (const r of rel) expect(Math.abs(r)).toBeLessThan(0.25);
    // the asked fact is in exactly one chunk
    const key = ep.qas[0].question.match(/record (\w+)\?/)![1];
    expect(ep.chunks.filter((c) => c.includes(`Record ${key}: ${ep.qas[0].answer}.`))).toHaveLength(1);
  });
});

describe('fact shapes (EPISODES.md "Facts and questions")', () => {
  const one = (kind: (typeof FACT_TYPES)[number], filler: Filler) =>
    heldoutEpisodes(314159, kind, 1024, 8, filler, prose);

  it.each(['lexicon', 'prose'] as const)(
    '%s: each answer is copied from its fact, which stands in exactly one chunk',
    (filler) => {
      for (const ep of one('field', filler)) {
        const [, key] = /^What is the (.+)\?$/.exec(ep.qas[0].question)!;
        const fact = ep.chunks
          .join('\n')
          .split('\n')
          .filter((l) => l.toLowerCase() === `${key}: ${ep.qas[0].answer}`.toLowerCase());
        expect(fact).toHaveLength(1);
      }
      for (const ep of one('setting', filler)) {
        const [, key] = /^What is the value of (\S+)\?$/.exec(ep.qas[0].question)!;
        const lines = ep.chunks.flatMap((c) => c.split('\n'));
        expect(lines.filter((l) => l === `${key} = ${ep.qas[0].answer}`)).toHaveLength(1);
        // 3 distractor settings of the same shape, on lines of their own
        expect(lines.filter((l) => / = /.test(l) && /^[a-z_.]+ = /.test(l)).length).toBeGreaterThanOrEqual(4);
      }
      for (const ep of one('table', filler)) {
        const [, key] = /^What does the table list for (\S+)\?$/.exec(ep.qas[0].question)!;
        const text = ep.chunks.join('\n');
        expect(text.split('\n').filter((l) => l === `| ${key} | ${ep.qas[0].answer} |`)).toHaveLength(1);
        // header, rule and 4 rows in one block
        expect(text).toMatch(
          /\| (Option|Setting|Parameter|Name|Variable) \| (Default|Value) \|\n\|---\|---\|(\n\| [^\n]+ \|){4}/,
        );
      }
    },
  );

  it('prose filler never contains a key of the episode, and comes from the evaluation prose', () => {
    const all = new Set(prose.flat());
    for (const kind of FACT_TYPES)
      for (const ep of one(kind, 'prose')) {
        const q = ep.qas[0].question;
        const key = /(?:record|of|for|the) (\S+(?: \S+)?)\?$/.exec(q)?.[1];
        const lines = ep.chunks.flatMap((c) => c.split('\n'));
        const filler = lines.filter((l) => all.has(l));
        expect(filler.length).toBeGreaterThan(lines.length / 2);
        if (key && kind !== 'passkey')
          for (const l of filler) expect(l.toLowerCase().includes(key.toLowerCase())).toBe(false);
        expect(ep.meta.filler).toBe('prose');
      }
  });
});
