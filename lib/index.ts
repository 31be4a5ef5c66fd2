// selective-scan: the custom operators of Mamba-style state space models, on CUDA GPUs and CPUs.
// The public API (docs/API.md) is everything exported here; each op is one line.
export { Tensor } from './tensor.js';
export type { DType, DeviceSpec, Device } from './tensor.js';
export { cuda, buildInfo, setNumThreads, setHostCacheLimit, emptyHostCache, hostMemoryInfo } from './backend.js';
export type { BuildInfo, CudaMemoryInfo, HostMemoryInfo } from './backend.js';
export type { CodedError, ErrorCode } from './errors.js';

export * from './ops/selective-scan.js';
export * from './ops/state-update.js';
export * from './ops/ssd-scan.js';
export * from './ops/causal-conv1d.js';
