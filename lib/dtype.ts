// The element types, in one table: the code each has in the native descriptors (csrc/common/dtype.h's
// DType) and its size in bytes.
export type DType = 'float32' | 'float16' | 'bfloat16';

export const DTYPES = {
  float32: { code: 0, bytes: 4 },
  float16: { code: 1, bytes: 2 },
  bfloat16: { code: 2, bytes: 2 },
} as const satisfies Record<DType, { code: number; bytes: number }>;

/** The native code of a dtype (csrc/common/dtype.h). */
export type DTypeCode = (typeof DTYPES)[DType]['code'];

export const ALL_DTYPES = Object.keys(DTYPES) as readonly DType[];

export function isDType(value: unknown): value is DType {
  return typeof value === 'string' && Object.hasOwn(DTYPES, value);
}

export function dtypeCode(dtype: DType): DTypeCode {
  return DTYPES[dtype].code;
}

export function dtypeBytes(dtype: DType): number {
  return DTYPES[dtype].bytes;
}
