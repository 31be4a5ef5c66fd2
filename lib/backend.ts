// What this build and this machine offer: the CUDA backend, build information, CPU threads, and
// the cache of host memory.
import { describe } from './errors.js';
import { type BuildInfo, type CudaMemoryInfo, type HostMemoryInfo, native } from './native.js';
import { type DeviceSpec, deviceIndex, parseDevice } from './tensor.js';

let cudaInfo: ReturnType<typeof native.cudaInfo> | undefined;
function info() {
  cudaInfo ??= native.cudaInfo();
  return cudaInfo;
}

function cudaIndex(fn: string, device: DeviceSpec): number {
  const parsed = parseDevice(fn, device);
  if (parsed === 'cpu') throw new RangeError(`${fn}: device must be a CUDA device, got 'cpu'`);
  return deviceIndex(parsed);
}

export const cuda = {
  /** Compiled with CUDA, and a usable GPU and driver are present. */
  isAvailable(): boolean {
    return info().available;
  },
  /** Why CUDA cannot be used here (e.g. 'no NVIDIA driver found'), or null when it can. */
  get unavailableReason(): string | null {
    return info().reason;
  },
  deviceCount(): number {
    return info().deviceCount;
  },
  /** Memory of the device's pool: live, peak and reserved bytes, and the device's free and total. */
  memoryInfo(device: DeviceSpec = 'cuda'): CudaMemoryInfo {
    return native.memoryInfo(cudaIndex('cuda.memoryInfo', device));
  },
  /** Starts a new peak for memoryInfo().peakAllocatedBytes from the current use. */
  resetPeakMemory(device: DeviceSpec = 'cuda'): void {
    native.resetPeakMemory(cudaIndex('cuda.resetPeakMemory', device));
  },
  /** Resolves when all queued work on the device is done; rejects with ERR_CUDA on a device fault. */
  synchronize(device: DeviceSpec = 'cuda'): Promise<void> {
    try {
      const parsed = parseDevice('cuda.synchronize', device);
      if (parsed === 'cpu') return Promise.resolve();
      return native.synchronize(deviceIndex(parsed));
    } catch (error) {
      return Promise.reject(error);
    }
  },
};

export type { BuildInfo, CudaMemoryInfo, HostMemoryInfo };

export function buildInfo(): BuildInfo {
  return native.buildInfo();
}

/** Threads of the CPU backend (default: the machine's cores, or SELECTIVE_SCAN_NUM_THREADS). */
export function setNumThreads(n: number): void {
  if (typeof n !== 'number') throw new TypeError(`setNumThreads: n must be a number, got ${describe(n)}`);
  if (!Number.isInteger(n) || n < 1 || n > 4096) {
    throw new RangeError(`setNumThreads: n must be an integer from 1 to 4096, got ${n}`);
  }
  native.setNumThreads(n);
}

/** The largest host cache limit (the host allocator's largest allocation): 2^50 bytes. */
const MAX_HOST_BYTES = 2 ** 50;

/**
 * The most bytes of freed host tensors (and scratch) kept for reuse; 0 turns the cache off. Frees
 * at once what no longer fits.
 */
export function setHostCacheLimit(bytes: number): void {
  const fn = 'setHostCacheLimit';
  if (typeof bytes !== 'number') throw new TypeError(`${fn}: bytes must be a number, got ${describe(bytes)}`);
  if (!Number.isInteger(bytes) || bytes < 0 || bytes > MAX_HOST_BYTES) {
    throw new RangeError(`${fn}: bytes must be an integer from 0 to 2^50, got ${describe(bytes)}`);
  }
  native.setHostCacheLimit(bytes);
}

/** Returns every cached block of host memory to the system. */
export function emptyHostCache(): void {
  native.emptyHostCache();
}

/** The host allocator's use: live and cached bytes, the cache's limit, hits and misses. */
export function hostMemoryInfo(): HostMemoryInfo {
  return native.hostMemoryInfo();
}
