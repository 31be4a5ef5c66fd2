// The compiled addon (csrc/), loaded once. Its functions take the internal Storage objects and
// plain descriptors; the rest of lib/ is what users call.
import path from 'node:path';

export interface Storage {
  readonly pointer: bigint;
  readonly bytes: number;
  readonly device: number;
  dispose(): void;
}

export interface Native {
  Storage: new (device: number, bytes: number, zeroFillOrPointerOrArray: boolean | bigint | Float32Array) => Storage;
  writeValues(storage: Storage, dtype: number, values: Float32Array | Float64Array): void;
  writeBits(storage: Storage, bits: Uint16Array): void;
  readValues(storage: Storage, dtype: number, numel: number): Float32Array;
  readValuesAsync(storage: Storage, dtype: number, numel: number): Promise<Float32Array>;
  readBits(storage: Storage, numel: number): Uint16Array;
  copy(dst: Storage, dstDtype: number, src: Storage, srcDtype: number, numel: number): void;
  chunkLength(device: number, batch: number, dim: number, seqlen: number, dstate: number): number;
  scanForward(descriptor: object): void;
  scanBackward(descriptor: object): void;
  stateUpdate(descriptor: object): void;
  synchronize(device: number): Promise<void>;
  requireDevice(device: number): void;
  cudaInfo(): { compiled: boolean; available: boolean; reason: string | null; deviceCount: number };
  /** What backend.ts's buildInfo() returns, and the CPU kernels compiled in (benchmarks). */
  buildInfo(): BuildInfo & { cpuIsasCompiled: string[] };
  setNumThreads(n: number): void;
  memoryInfo(device: number): CudaMemoryInfo;
  resetPeakMemory(device: number): void;
  /** A timing event queued on the device's stream (benchmarks). */
  recordEvent(device: number): object;
  /** Milliseconds between two events; waits for `end`. */
  elapsedMs(start: object, end: object): number;
  /** exp2 evaluations per second on the CPU (device -1, all threads) or a GPU (benchmarks). */
  measureExp2Rate(device: number): number;
}

export interface BuildInfo {
  version: string;
  cuda: boolean;
  cudaRuntime: string | null;
  cudaArchitectures: string[];
  cpuThreads: number;
  /** The CPU kernels in use: baseline (x86-64), avx2 or avx512. */
  cpuIsa: string;
}

export interface CudaMemoryInfo {
  /** Bytes held by live allocations (tensors and scratch) in the device's memory pool. */
  allocatedBytes: number;
  /** The most allocatedBytes has been since the last cuda.resetPeakMemory(). */
  peakAllocatedBytes: number;
  /** Bytes the pool keeps from the driver (freed memory stays for reuse). */
  reservedBytes: number;
  freeBytes: number;
  totalBytes: number;
}

const packageRoot = path.join(__dirname, '..');

function load(): Native {
  try {
    // node-gyp-build looks in build/Release (a local build) and then prebuilds/<platform>-<arch>.
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => Native;
    return nodeGypBuild(packageRoot);
  } catch (error) {
    const reason = error instanceof Error ? error.message.trim() : String(error);
    throw new Error(
      `selective-scan: its native addon could not be loaded on ${process.platform}-${process.arch}.\n${reason}\n\n` +
        'The package ships a prebuilt binary for Linux x64 with glibc 2.28 or newer (prebuilds/linux-x64), ' +
        'which needs no install script. Elsewhere the addon is built from source when the package is installed, ' +
        'which needs cmake 3.25 or newer, a C++17 compiler (g++ 9 or newer), the CUDA toolkit 13.0 or newer for ' +
        'the GPU backend (optional), and three packages:\n' +
        '  npm install --save-dev cmake-js node-addon-api node-api-headers\n' +
        '  npm install-scripts approve selective-scan    # npm 11 skips install scripts it has not approved\n' +
        '  npm rebuild selective-scan --foreground-scripts',
    );
  }
}

export const native: Native = load();
