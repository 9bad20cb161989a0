// The engine's errors. Each message names the file, the op or the request field and the problem. The
// engine knows nothing of HTTP: the runner server maps these to its error envelope (server/errors.ts).

/** A model directory that cannot be loaded. */
export class ModelLoadError extends Error {
  readonly file: string;
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'ModelLoadError';
    this.file = file;
  }
}

/**
 * A request the engine cannot run as asked (an empty prompt, a prompt and max tokens past the context):
 * the caller's mistake, which no retry fixes. The runner server answers it as 400 `bad_request`.
 */
export class InvalidRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidRequestError';
  }
}

/**
 * A request the engine cannot take now (its scheduler is shutting down); another runner may take it. The
 * runner server answers it as 503 `unavailable`.
 */
export class NotAcceptingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotAcceptingError';
  }
}

/** A backend op called with a wrong argument (shape, dtype, foreign or freed handle, range), or one the backend lacks. */
export class BackendArgumentError extends Error {
  readonly op: string;
  constructor(op: string, problem: string) {
    super(`${op}: ${problem}`);
    this.name = 'BackendArgumentError';
    this.op = op;
  }
}

/** A backend that cannot run on this machine (no adapter, no SIMD, no addon); the message says what is missing. */
export class BackendUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}
