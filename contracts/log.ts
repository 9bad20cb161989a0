// The log interface every layer writes to: one structured record per call (level, message, fields).
// Implementations: src/log.ts (JSON lines on stderr); tests pass a function that collects records.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Log = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;
