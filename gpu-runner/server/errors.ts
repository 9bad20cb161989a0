// The runner's errors on the wire: the envelope of contracts/errors.ts. The engine throws its own errors
// (gpu-runner/engine/errors.ts) and knows nothing of HTTP; they are mapped to error codes here, the one
// place the runner server turns a failure into a status.
import { AppError, asAppError } from '../../contracts/errors.ts';
import { InvalidRequestError, NotAcceptingError } from '../engine/errors.ts';

/** Any thrown value as the AppError the runner answers with; unknown errors become `internal`. */
export function runnerError(err: unknown): AppError {
  if (err instanceof InvalidRequestError)
    return new AppError('bad_request', err.message, undefined, { cause: err });
  if (err instanceof NotAcceptingError)
    return new AppError('unavailable', err.message, undefined, { cause: err });
  return asAppError(err);
}
