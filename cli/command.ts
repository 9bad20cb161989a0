// The shape of one CLI command (each lives in ./commands/<name>.ts and exports `command`).
export interface Command {
  summary: string;
  usage: string;
  /** Returns the process exit code. */
  run(args: string[]): Promise<number>;
}
