// Calls `load` now and every `everyMs` while the component is mounted and `active` holds; a slow answer
// never overlaps the next call. Returns a function that reloads at once.
import { useCallback, useEffect, useRef } from 'preact/hooks';

export function usePoll(load: () => Promise<void>, everyMs: number, active = true): () => Promise<void> {
  const latest = useRef(load);
  latest.current = load;
  const reload = useCallback(() => latest.current(), []);
  useEffect(() => {
    if (!active) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      try {
        await latest.current();
      } catch {
        // the load shows its own errors; the next tick tries again
      } finally {
        if (!stopped) timer = setTimeout(tick, everyMs);
      }
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [everyMs, active]);
  return reload;
}
