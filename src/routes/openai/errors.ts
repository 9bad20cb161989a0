// OpenAI's error shape on the OpenAI routes (/v1/files, /v1/vector_stores, /v1/responses, /v1/embeddings):
// `{error: {message, type, param, code}}`, which the SDKs turn into their typed errors (BadRequestError,
// NotFoundError, …, by HTTP status). kvrag's envelope fields stay in it: `code` is kvrag's error code
// (contracts/errors.ts) and `request_id` the request's, so the one envelope reads the same to kvrag's own
// clients. `param` names the first offending request field of a validation error.
import type { AppError, ErrorCode } from '../../../contracts/errors.ts';

/** Path prefixes whose errors take OpenAI's shape; every other route keeps kvrag's envelope. */
export const OPENAI_PREFIXES = ['/v1/files', '/v1/vector_stores', '/v1/responses', '/v1/embeddings'] as const;

export const isOpenAiPath = (path: string) =>
  OPENAI_PREFIXES.some((p) => path === p || path.startsWith(`${p}/`));

/** OpenAI's error `type` for each kvrag code. */
const TYPE: Record<ErrorCode, string> = {
  bad_request: 'invalid_request_error',
  invalid_config: 'invalid_request_error',
  unauthorized: 'authentication_error',
  forbidden: 'permission_error',
  not_found: 'invalid_request_error',
  conflict: 'invalid_request_error',
  payload_too_large: 'invalid_request_error',
  unsupported_media_type: 'invalid_request_error',
  rate_limited: 'rate_limit_error',
  internal: 'server_error',
  upstream_unavailable: 'server_error',
  unavailable: 'server_error',
  timeout: 'server_error',
};

/** The first offending field of a validation error (zod issues in `details`), as a dotted path. */
function paramOf(details: unknown): string | null {
  const issues = (details as { issues?: { path?: PropertyKey[] }[] } | undefined)?.issues;
  const path = issues?.[0]?.path;
  return path && path.length > 0 ? path.map(String).join('.') : null;
}

export function toOpenAiError(err: AppError, requestId: string) {
  return {
    error: {
      message: err.message,
      type: TYPE[err.code],
      param: paramOf(err.details),
      code: err.code,
      request_id: requestId,
    },
  };
}
