// Who the router believes (src/routing/heartbeat-trust.ts): heartbeats signed with the runner credential (the
// current or the previous one), fresh, on an allowed origin; any change to a signed heartbeat breaks it.
import { describe, expect, it } from 'vitest';
import { BloomFilter } from '../../contracts/bloom.ts';
import { type RunnerHeartbeat, signHeartbeat } from '../../contracts/heartbeat.ts';
import { heartbeatRefusal, urlAllowed } from '../../src/routing/heartbeat-trust.ts';

const CURRENT = 'heartbeat-current-credential-0123456789abcdef';
const PREVIOUS = 'heartbeat-previous-credential-0123456789abcdef';
const NOW = 1_800_000_000_000;
const hb = (over: Partial<RunnerHeartbeat> = {}): RunnerHeartbeat => ({
  v: 1,
  id: 'r1',
  url: 'http://10.0.3.7:8081',
  models: ['fp-0123456789'],
  load: { running: 0, waiting: 0, maxRunning: 8 },
  kvFreeBytes: 1024,
  artifacts: BloomFilter.forCapacity(64).toJSON(),
  sentAt: NOW,
  ...over,
});

describe('runner URL allow-list', () => {
  it('matches origins; * is one DNS label, or one octet in an IPv4 pattern', () => {
    const allow = ['http://10.0.*.*:8081', 'https://*.runners.example', 'http://runner:8081'];
    const yes = [
      'http://10.0.3.7:8081',
      'http://10.0.3.7:8081/v1/generate',
      'https://r-1.runners.example',
      'http://runner:8081',
    ];
    const no = [
      'http://10.0.evil.com:8081', // a DNS name shaped like the IPv4 pattern
      'http://10.0.3.7:9999',
      'https://10.0.3.7:8081',
      'http://10.1.3.7:8081',
      'https://a.b.runners.example', // two labels for one *
      'https://runners.example',
      'https://evil.example/?.runners.example',
      'http://runner:8081@evil.example',
      'http://runner.evil:8081',
      'not a url',
    ];
    for (const u of yes) expect(urlAllowed(u, allow), u).toBe(true);
    for (const u of no) expect(urlAllowed(u, allow), u).toBe(false);
  });
});

describe('signed heartbeats', () => {
  it('a heartbeat signed with the current or the previous credential is accepted', async () => {
    const trust = { tokens: [CURRENT, PREVIOUS] };
    expect(await heartbeatRefusal(await signHeartbeat(hb(), CURRENT), trust, NOW)).toBeNull();
    expect(await heartbeatRefusal(await signHeartbeat(hb(), PREVIOUS), trust, NOW)).toBeNull();
    expect(await heartbeatRefusal(await signHeartbeat(hb(), PREVIOUS), { tokens: [CURRENT] }, NOW)).toMatch(
      /signature/,
    );
  });

  it('unsigned, tampered, stale or off-list heartbeats are refused', async () => {
    const trust = { tokens: [CURRENT], allow: ['http://10.0.*.*:8081'] };
    const signed = await signHeartbeat(hb(), CURRENT);
    const cases: [string, RunnerHeartbeat][] = [
      ['unsigned', hb()],
      ['url swapped', { ...signed, url: 'http://10.0.9.9:8081' }],
      ['load lowered', { ...signed, load: { ...signed.load, running: 0, maxRunning: 64 } }],
      ['models changed', { ...signed, models: ['other-model-0'] }],
      ['artifacts claimed', { ...signed, artifacts: { ...signed.artifacts, n: 99 } }],
      ['sig garbled', { ...signed, sig: 'f'.repeat(64) }],
    ];
    for (const [what, h] of cases) expect(await heartbeatRefusal(h, trust, NOW), what).not.toBeNull();
    expect(await heartbeatRefusal(signed, trust, NOW + 61_000)).toMatch(/stale/);
    expect(await heartbeatRefusal(signed, trust, NOW - 61_000)).toMatch(/stale/);
    const offList = await signHeartbeat(hb({ url: 'http://192.168.1.5:8081' }), CURRENT);
    expect(await heartbeatRefusal(offList, trust, NOW)).toMatch(/allow-list/);
    expect(await heartbeatRefusal(offList, { tokens: [CURRENT] }, NOW)).toBeNull();
  });

  it('the signature does not depend on key order', async () => {
    const signed = await signHeartbeat(hb(), CURRENT);
    const reordered = Object.fromEntries(Object.entries(signed).reverse()) as RunnerHeartbeat;
    expect(await heartbeatRefusal(reordered, { tokens: [CURRENT] }, NOW)).toBeNull();
  });
});
