// One error envelope for the whole service, API and runner alike: {error: {code, message, request_id}}.
// Codes map to HTTP statuses here and nowhere else.
import type { z } from 'zod';

export const ERROR_STATUS = {
  bad_request: 400,
  invalid_config: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal: 500,
  upstream_unavailable: 502,
  unavailable: 503,
  timeout: 504,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** Whether a retry of the same request can help, by code. */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set([
  'rate_limited',
  'upstream_unavailable',
  'unavailable',
  'timeout',
]);

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly details: unknown;
  constructor(code: ErrorCode, message: string, details?: unknown, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AppError';
    this.code = code;
    this.details = details;
  }
  get status(): number {
    return ERROR_STATUS[this.code];
  }
  get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }
}

export interface ErrorEnvelope {
  error: { code: ErrorCode; message: string; request_id: string; retryable?: boolean; details?: unknown };
}

export function toEnvelope(err: AppError, requestId: string): ErrorEnvelope {
  const body: ErrorEnvelope = { error: { code: err.code, message: err.message, request_id: requestId } };
  if (err.status >= 500) body.error.retryable = err.retryable;
  if (err.details !== undefined) body.error.details = err.details;
  return body;
}

/** Normalises anything thrown into an AppError; unknown errors become `internal` without leaking internals. */
export function asAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  return new AppError('internal', 'internal error', undefined, { cause: err });
}

/** A zod failure as one line naming each offending field: `a.b: message; c: message`. */
export function issuesText(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

/** Parses input at a boundary: the data, or AppError('bad_request') naming `what` and every problem. */
export function parseWith<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const r = schema.safeParse(input);
  if (!r.success)
    throw new AppError('bad_request', `invalid ${what}: ${issuesText(r.error)}`, { issues: r.error.issues });
  return r.data;
}
