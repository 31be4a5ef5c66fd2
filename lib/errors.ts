// The errors selective-scan throws. Wrong types and dtypes are TypeErrors, wrong shapes and values
// RangeErrors; everything else is an Error with a stable `code`.

export type ErrorCode =
  | 'ERR_DISPOSED'
  | 'ERR_DEVICE_MISMATCH'
  | 'ERR_CUDA_UNAVAILABLE'
  | 'ERR_CUDA_OOM'
  | 'ERR_CUDA'
  /** Host memory could not be allocated (a tensor on the CPU, or an op's scratch). */
  | 'ERR_OUT_OF_MEMORY';

export interface CodedError extends Error {
  code: ErrorCode;
}

export function codedError(code: ErrorCode, message: string): CodedError {
  const error = new Error(message) as CodedError;
  error.code = code;
  return error;
}

/** Formats a value for an error message: shapes as [2, 3], strings quoted, others by type. */
export function describe(value: unknown): string {
  if (Array.isArray(value)) return `[${value.join(', ')}]`;
  if (typeof value === 'string') return `'${value}'`;
  if (value === null) return 'null';
  if (typeof value === 'object') return (value as object).constructor?.name ?? 'an object';
  if (typeof value === 'bigint') return `${value}n`;
  return String(value);
}
