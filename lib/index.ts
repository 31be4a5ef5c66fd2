// selective-scan: the selective scan of Mamba-style state space models, on CUDA GPUs and CPUs.
// The public API is ../shared/design/API.md's; everything is exported from here.
export { Tensor } from './tensor.js';
export type { DType, DeviceSpec, Device } from './tensor.js';
export { selectiveScan, selectiveScanBackward, ScanContext } from './scan.js';
export type { ScanOptions, ScanResult, ScanBackwardOptions, ScanGradients } from './scan.js';
export { selectiveStateUpdate } from './step.js';
export type { StateUpdateOptions } from './step.js';
export { cuda, buildInfo, setNumThreads } from './backend.js';
export type { BuildInfo, CudaMemoryInfo } from './backend.js';
export type { CodedError, ErrorCode } from './errors.js';
