// System packages the test suite needs, installed when missing (as root) or named with the exact command.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface SystemNeed {
  /** Debian package providing it. */
  pkg: string;
  /** True when already present. */
  present: () => boolean;
}

const onPath = (bin: string) => () => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;

/** Debian's Chromium: the browser the console's tests drive (test/helpers/browser.ts). */
export const CHROMIUM = '/usr/bin/chromium';

export const REQUIRED: SystemNeed[] = [
  { pkg: 'redis-server', present: onPath('redis-server') },
  { pkg: 'chromium', present: () => existsSync(CHROMIUM) },
];

/** Optional: live PyTorch golden recomputation runs only when these are present; never installed by tests. */
export const hasTorch = (): boolean =>
  existsSync('/usr/bin/python3') &&
  spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;

export function ensureSystemPackages(needs: SystemNeed[] = REQUIRED): void {
  const missing = needs.filter((n) => !n.present()).map((n) => n.pkg);
  if (missing.length === 0) return;
  const cmd = `apt-get update && apt-get install -y ${missing.join(' ')}`;
  if (process.getuid?.() !== 0) {
    throw new Error(
      `missing system packages: ${missing.join(', ')}. Install them with:\n  sudo sh -c '${cmd}'`,
    );
  }
  console.log(`[kvrag tests] installing missing system packages: ${missing.join(', ')}`);
  execFileSync('sh', ['-c', `DEBIAN_FRONTEND=noninteractive ${cmd}`], { stdio: 'inherit' });
  const still = needs.filter((n) => !n.present()).map((n) => n.pkg);
  if (still.length) throw new Error(`system packages still missing after install: ${still.join(', ')}`);
}
