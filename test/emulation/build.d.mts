// Types of build.mjs, for test/kernel-emulation.test.ts.
export function findCompiler(): { cxx: string; version: string; missing?: undefined } | { missing: string };

export function buildEmulator(options?: {
  csrc?: string;
  jobs?: number;
  log?: (message: string) => void;
}): Promise<{ binary: string; compiled: number; seconds: number; sanitizer: boolean }>;
