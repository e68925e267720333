/**
 * protosim's one error type. It carries a string `code` and serialises to JSON, so it survives a
 * worker-thread boundary (never rely on `instanceof` across threads: test `isProtosimError`).
 */

/** Error codes and the process exit code each one maps to. */
export const ERROR_EXIT_CODES = {
  E_USAGE: 2,
  E_SCENARIO_INVALID: 2,
  E_SCENARIO_UNREADABLE: 2,
  E_OUTPUT_EXISTS: 2,
  E_INTERNAL: 3,
  E_ACTOR_FAILED: 3,
  E_WORKER_CRASHED: 3,
} as const;
export type ErrorCode = keyof typeof ERROR_EXIT_CODES;

export class ProtosimError extends Error {
  readonly code: ErrorCode;
  readonly details: unknown;
  constructor(code: ErrorCode, message: string, details?: unknown) {
    super(message);
    this.name = 'ProtosimError';
    this.code = code;
    this.details = details;
  }
  toJSON(): { name: string; code: ErrorCode; message: string; details: unknown } {
    return { name: this.name, code: this.code, message: this.message, details: this.details };
  }
}

/** True for a {@link ProtosimError} or its JSON form (duck-typed on purpose). */
export function isProtosimError(x: unknown): x is { code: ErrorCode; message: string; details?: unknown } {
  return (
    typeof x === 'object' &&
    x !== null &&
    typeof (x as { code?: unknown }).code === 'string' &&
    (x as { code: string }).code in ERROR_EXIT_CODES &&
    typeof (x as { message?: unknown }).message === 'string'
  );
}
