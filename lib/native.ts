// The compiled addon (csrc/), loaded once, and the types of everything it exports. Its functions
// take the internal Storage objects and plain descriptor objects; lib/ops/*.ts build the
// descriptors after checking every user argument, and csrc/ops/<op>/<op>_binding.cc reads them.
import path from 'node:path';
import type { DTypeCode } from './dtype.js';
import { loadAddon } from './load-addon.js';

/** The bytes behind a tensor (csrc/storage.h). */
export interface Storage {
  readonly pointer: bigint;
  readonly bytes: number;
  readonly device: number;
  dispose(): void;
}

/** -1 for the host, i for cuda:i. */
export type DeviceIndex = number;

// ---- Op descriptors ---------------------------------------------------------------------------

/** What every op descriptor has: where it runs and the dtype of its inputs. */
export interface OpDescriptor {
  device: DeviceIndex;
  dtype: DTypeCode;
}

/** B or C of a scan: fixed (dim, N) float32, or input-dependent (batch, groups, N, L) in the input dtype. */
export type ProjectionDescriptor =
  | { kind: 'fixed'; data: Storage }
  | { kind: 'varying'; groups: number; data: Storage };

export interface ScanShapeDescriptor {
  device: DeviceIndex;
  batch: number;
  dim: number;
  seqlen: number;
  dstate: number;
}

/** The inputs of a selective scan: shared by the forward and the backward (csrc/ops/selective_scan/scan.h). */
export interface ScanInputsDescriptor extends OpDescriptor, ScanShapeDescriptor {
  u: Storage;
  delta: Storage;
  A: Storage;
  B: ProjectionDescriptor;
  C: ProjectionDescriptor;
  D?: Storage;
  z?: Storage;
  deltaBias?: Storage;
  /** The rows of the states: nseq with cuSeqlens, else batch. */
  sequences: number;
  cuSeqlens?: Int32Array;
  initialState?: Storage;
  deltaSoftplus: boolean;
  /** The backend's scanChunkLength for this shape: steps per checkpoint. */
  chunkLength: number;
}

export interface ScanForwardDescriptor extends ScanInputsDescriptor {
  out: Storage;
  lastState?: Storage;
  checkpoints?: Storage;
}

export interface ScanBackwardDescriptor extends ScanInputsDescriptor {
  checkpoints: Storage;
  dout: Storage;
  dLastState?: Storage;
  deterministic: boolean;
  du: Storage;
  ddelta: Storage;
  dA: Storage;
  dB: Storage;
  dC: Storage;
  dz?: Storage;
  dD?: Storage;
  ddeltaBias?: Storage;
  dInitialState?: Storage;
}

export interface SsdShapeDescriptor {
  device: DeviceIndex;
  batch: number;
  seqlen: number;
  heads: number;
  headDim: number;
  groups: number;
  dstate: number;
}

/** The inputs of a state space dual scan (csrc/ops/ssd_scan/ssd_scan.h). */
export interface SsdInputsDescriptor extends OpDescriptor, SsdShapeDescriptor {
  x: Storage;
  dt: Storage;
  A: Storage;
  B: Storage;
  C: Storage;
  z?: Storage;
  D?: Storage;
  dPerHead: boolean;
  dtBias?: Storage;
  dtSoftplus: boolean;
  dtLow: number;
  dtHigh: number;
  sequences: number;
  cuSeqlens?: Int32Array;
  initialState?: Storage;
  chunkLength: number;
}

export interface SsdForwardDescriptor extends SsdInputsDescriptor {
  out: Storage;
  lastState?: Storage;
  checkpoints?: Storage;
}

export interface SsdBackwardDescriptor extends SsdInputsDescriptor {
  checkpoints: Storage;
  dout: Storage;
  dLastState?: Storage;
  deterministic: boolean;
  dx: Storage;
  ddt: Storage;
  dA: Storage;
  dB: Storage;
  dC: Storage;
  dz?: Storage;
  dD?: Storage;
  ddtBias?: Storage;
  dInitialState?: Storage;
}

/** selectiveStateUpdate in its heads form (csrc/ops/state_update/state_update.h). */
export interface StateUpdateDescriptor extends OpDescriptor {
  batch: number;
  heads: number;
  headDim: number;
  dstate: number;
  groups: number;
  stateSlots: number;
  scalarPerHead: boolean;
  dtSoftplus: boolean;
  dPerHead: boolean;
  state: Storage;
  x: Storage;
  dt: Storage;
  A: Storage;
  B: Storage;
  C: Storage;
  D?: Storage;
  z?: Storage;
  dtBias?: Storage;
  stateBatchIndices?: Int32Array;
  y: Storage;
}

/** causalConv1dUpdate (csrc/ops/causal_conv1d/causal_conv1d.h). */
export interface ConvUpdateDescriptor extends OpDescriptor {
  batch: number;
  dim: number;
  width: number;
  stateSlots: number;
  silu: boolean;
  convState: Storage;
  x: Storage;
  weight: Storage;
  bias?: Storage;
  stateBatchIndices?: Int32Array;
  out: Storage;
}

/** The inputs of causalConv1d, shared by its forward and backward (csrc/ops/causal_conv1d/causal_conv1d.h). */
export interface ConvInputsDescriptor extends OpDescriptor {
  batch: number;
  dim: number;
  seqlen: number;
  width: number;
  silu: boolean;
  x: Storage;
  weight: Storage;
  bias?: Storage;
  /** nseq with cuSeqlens, else batch: the rows of the states. */
  sequences: number;
  cuSeqlens?: Int32Array;
  initialState?: Storage;
}

export interface ConvForwardDescriptor extends ConvInputsDescriptor {
  out: Storage;
  finalState?: Storage;
}

export interface ConvBackwardDescriptor extends ConvInputsDescriptor {
  dout: Storage;
  dFinalState?: Storage;
  deterministic: boolean;
  dx: Storage;
  dweight: Storage;
  dbias?: Storage;
  dInitialState?: Storage;
}

// ---- The addon ----------------------------------------------------------------------------------

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

export interface HostMemoryInfo {
  /** Bytes held by live host tensors and the CPU kernels' scratch, in the allocator's size classes. */
  allocatedBytes: number;
  /** The most allocatedBytes has been in this process. */
  peakAllocatedBytes: number;
  /** Bytes of freed blocks that the cache keeps for reuse. */
  cachedBytes: number;
  /** The most the cache keeps: setHostCacheLimit(), else SELECTIVE_SCAN_HOST_CACHE_LIMIT, else 256 MiB. */
  cacheLimitBytes: number;
  /** Host allocations served from the cache, since the process started. */
  cacheHits: number;
  /** Host allocations that asked the system for memory. */
  cacheMisses: number;
}

/** A timing event on a device's stream (benchmarks). */
export interface DeviceEvent {
  readonly __deviceEvent: unique symbol;
}

export interface Native {
  // Tensors (csrc/storage.cc, csrc/tensor_data.cc). The third argument: zero-fill; a device pointer
  // to wrap; or (internal, the tfjs adapter) a Float32Array whose memory a host storage wraps.
  Storage: new (
    device: DeviceIndex,
    bytes: number,
    init: boolean | bigint | Float32Array,
  ) => Storage;
  writeValues(storage: Storage, dtype: DTypeCode, values: Float32Array | Float64Array): void;
  writeBits(storage: Storage, bits: Uint16Array): void;
  readValues(storage: Storage, dtype: DTypeCode, numel: number): Float32Array;
  readValuesAsync(storage: Storage, dtype: DTypeCode, numel: number): Promise<Float32Array>;
  readBits(storage: Storage, numel: number): Uint16Array;
  copy(dst: Storage, dstDtype: DTypeCode, src: Storage, srcDtype: DTypeCode, numel: number): void;

  // Ops (csrc/ops/<op>/<op>_binding.cc)
  scanChunkLength(shape: ScanShapeDescriptor): number;
  scanForward(descriptor: ScanForwardDescriptor): void;
  scanBackward(descriptor: ScanBackwardDescriptor): void;
  stateUpdate(descriptor: StateUpdateDescriptor): void;
  ssdChunkLength(shape: SsdShapeDescriptor): number;
  ssdForward(descriptor: SsdForwardDescriptor): void;
  ssdBackward(descriptor: SsdBackwardDescriptor): void;
  convUpdate(descriptor: ConvUpdateDescriptor): void;
  convForward(descriptor: ConvForwardDescriptor): void;
  convBackward(descriptor: ConvBackwardDescriptor): void;

  // Backends (csrc/backend_binding.cc)
  synchronize(device: DeviceIndex): Promise<void>;
  requireDevice(device: DeviceIndex): void;
  cudaInfo(): { compiled: boolean; available: boolean; reason: string | null; deviceCount: number };
  buildInfo(): BuildInfo;
  setNumThreads(n: number): void;
  /** What is wrong with the environment variables the addon reads; the first call in the process only. */
  takeEnvironmentWarnings(): string[];
  memoryInfo(device: DeviceIndex): CudaMemoryInfo;
  resetPeakMemory(device: DeviceIndex): void;
  setHostCacheLimit(bytes: number): void;
  emptyHostCache(): void;
  hostMemoryInfo(): HostMemoryInfo;
  // Benchmark support, reached through lib/internal.ts only.
  recordEvent(device: DeviceIndex): DeviceEvent;
  elapsedMs(start: DeviceEvent, end: DeviceEvent): number;
  measureExp2Rate(device: DeviceIndex): number;
}

/** The folder of this copy of the package. */
export const packageRoot = path.join(__dirname, '..');

// A source build in build/Release, else the prebuilt binary in prebuilds/ (lib/load-addon.ts).
export const native: Native = loadAddon<Native>(packageRoot);

// Bad values of SELECTIVE_SCAN_NUM_THREADS, SELECTIVE_SCAN_CPU_ISA or
// SELECTIVE_SCAN_HOST_CACHE_LIMIT: the addon used its default instead, and says so once per process.
for (const message of native.takeEnvironmentWarnings()) {
  process.emitWarning(message, { type: 'SelectiveScanWarning', code: 'SELECTIVE_SCAN_ENV' });
}
