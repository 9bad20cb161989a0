// Stop strings over streamed text: finds the first stop string, and holds back a tail that could still
// become one, so streamed text never contains (part of) a stop string.

export interface StopScan {
  /** Text that is safe to emit now, from `emitted` on. */
  safeEnd: number;
  /** Index where a stop string starts, or -1. */
  stopAt: number;
}

export function scanStops(text: string, emitted: number, stops: readonly string[]): StopScan {
  if (stops.length === 0) return { safeEnd: text.length, stopAt: -1 };
  const longest = Math.max(...stops.map((s) => s.length));
  const from = Math.max(0, emitted - longest + 1);
  let stopAt = -1;
  for (const s of stops) {
    if (!s) continue;
    const i = text.indexOf(s, from);
    if (i >= 0 && (stopAt < 0 || i < stopAt)) stopAt = i;
  }
  if (stopAt >= 0) return { safeEnd: stopAt, stopAt };
  // hold back the longest suffix that is a proper prefix of some stop string
  let hold = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > hold; n--) {
      if (text.endsWith(s.slice(0, n))) {
        hold = n;
        break;
      }
    }
  }
  return { safeEnd: Math.max(emitted, text.length - hold), stopAt: -1 };
}

/**
 * Streams the part of `text` past `emitted` that can no longer turn into a stop string (all of it when
 * `final`), up to the stop when one matched. Returns the new emitted length and the stop position (−1).
 */
export function emitUntilStop(
  text: string,
  emitted: number,
  stops: readonly string[],
  final: boolean,
  onText?: (delta: string) => void,
): { emitted: number; stopAt: number } {
  const scan = scanStops(text, emitted, stops);
  const end = scan.stopAt >= 0 ? scan.stopAt : final ? text.length : scan.safeEnd;
  if (end > emitted) {
    onText?.(text.slice(emitted, end));
    emitted = end;
  }
  return { emitted, stopAt: scan.stopAt };
}
