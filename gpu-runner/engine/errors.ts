// The engine's errors. Each message names the file, the op or the request field and the problem; the
// runner server maps them to its HTTP envelope (EngineError's code is the envelope's code).

/** A model directory that cannot be loaded. */
export class ModelLoadError extends Error {
  readonly file: string;
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'ModelLoadError';
    this.file = file;
  }
}

/** A generation request the engine refuses or cannot take now. `code` is the API error code. */
export class EngineError extends Error {
  readonly code: 'bad_request' | 'unavailable';
  constructor(code: 'bad_request' | 'unavailable', message: string) {
    super(message);
    this.name = 'EngineError';
    this.code = code;
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
