// Structured JSON logs, one object per line on stderr.
import type { Log, LogLevel } from '../contracts/log.ts';

const ORDER: Record<LogLevel | 'silent', number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export function jsonLogger(level: LogLevel | 'silent', base: Record<string, unknown> = {}): Log {
  const min = ORDER[level];
  return (lvl, msg, fields) => {
    if (ORDER[lvl] < min) return;
    process.stderr.write(
      `${JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...base, ...fields })}\n`,
    );
  };
}
