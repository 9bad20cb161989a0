// A request's squeezed-attention control (DESIGN.md §4.2) resolved against the model's calibrated
// settings (squeezed.json, read with the model's files when the engine loaded): null = dense.
import { AppError } from '../../contracts/errors.ts';
import type { SqueezedControl } from '../../contracts/squeezed.ts';
import { resolveControl } from '../engine/attention/squeezed/calibrate.ts';
import type { SelectMode } from '../engine/attention/squeezed/select.ts';
import type { Engine } from '../engine/engine.ts';

export function squeezedMode(engine: Engine, control: SqueezedControl | undefined): SelectMode | null {
  if (!control || control.mode === 'off') return null;
  try {
    return resolveControl(control, engine.squeezedSettings);
  } catch (err) {
    throw new AppError('bad_request', (err as Error).message);
  }
}
