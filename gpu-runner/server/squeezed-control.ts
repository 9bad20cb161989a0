// A request's squeezed-attention control (DESIGN.md §4.2) resolved against the model's calibrated
// settings (squeezed.json beside the model, read once per engine): null = dense.
import {
  readSqueezedSettings,
  resolveControl,
  type SqueezedSettings,
} from '../engine/attention/squeezed/calibrate.ts';
import type { SqueezedControl } from '../../contracts/squeezed.ts';
import type { SelectMode } from '../engine/attention/squeezed/select.ts';
import type { Engine } from '../engine/engine.ts';
import { AppError } from '../../contracts/errors.ts';

const settings = new WeakMap<Engine, Promise<SqueezedSettings | null>>();

export async function squeezedMode(
  engine: Engine,
  control: SqueezedControl | undefined,
): Promise<SelectMode | null> {
  if (!control || control.mode === 'off') return null;
  let s = settings.get(engine);
  if (!s) {
    s = readSqueezedSettings(engine.dir);
    settings.set(engine, s);
  }
  try {
    return resolveControl(control, await s);
  } catch (err) {
    throw new AppError('bad_request', (err as Error).message);
  }
}
