// What this build and this machine offer: the CUDA backend, build information, CPU threads.
import { describe } from './errors.js';
import { native } from './native.js';
import { type DeviceSpec, deviceIndex, parseDevice } from './tensor.js';

let cudaInfo: ReturnType<typeof native.cudaInfo> | undefined;
function info() {
  cudaInfo ??= native.cudaInfo();
  return cudaInfo;
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

export interface BuildInfo {
  version: string;
  cuda: boolean;
  cudaRuntime: string | null;
  cudaArchitectures: string[];
  cpuThreads: number;
  /** The CPU kernels in use: baseline (x86-64), avx2 or avx512. */
  cpuIsa: string;
}

export function buildInfo(): BuildInfo {
  const b = native.buildInfo();
  return {
    version: b.version,
    cuda: b.cuda,
    cudaRuntime: b.cudaRuntime,
    cudaArchitectures: b.cudaArchitectures,
    cpuThreads: b.cpuThreads,
    cpuIsa: b.cpuIsa,
  };
}

/** Threads of the CPU backend (default: the machine's cores, or SELECTIVE_SCAN_NUM_THREADS). */
export function setNumThreads(n: number): void {
  if (typeof n !== 'number') throw new TypeError(`setNumThreads: n must be a number, got ${describe(n)}`);
  if (!Number.isInteger(n) || n < 1 || n > 4096) {
    throw new RangeError(`setNumThreads: n must be an integer from 1 to 4096, got ${n}`);
  }
  native.setNumThreads(n);
}
