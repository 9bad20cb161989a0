// Runs once before the suite: makes sure the system packages the integration tests use are installed.
import { ensureSystemPackages } from './system-packages.ts';

export default function setup(): void {
  ensureSystemPackages();
}
