// Errors raised while loading a model directory. The message always names the file and the problem.

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
