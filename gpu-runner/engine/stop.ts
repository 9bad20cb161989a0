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
