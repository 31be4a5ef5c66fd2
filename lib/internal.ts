/**
 * @internal Support for the benchmarks and tests of this repository: timing events on a device's
 * stream, the exp2 rate and copy bandwidth of a device, a scan's checkpoint interval. Reached as
 * `selective-scan/internal`; not part of the public API (docs/API.md), and may change at any time.
 * @packageDocumentation
 */
import { dtypeCode } from './dtype.js';
import { type DeviceEvent, native } from './native.js';
import * as tensorInternals from './tensor.js';
import { type DeviceSpec, type Tensor, deviceIndex, parseDevice, storageOf } from './tensor.js';

export type { DeviceEvent };

function index(device: DeviceSpec | 'cpu'): number {
  return deviceIndex(parseDevice('internal', device));
}

/** A timing event queued on the device's stream. */
export function recordEvent(device: DeviceSpec): DeviceEvent {
  return native.recordEvent(index(device));
}

/** Milliseconds between two events of one device; waits for `end`. */
export function elapsedMs(start: DeviceEvent, end: DeviceEvent): number {
  return native.elapsedMs(start, end);
}

/** exp2 evaluations per second on the CPU (all threads) or a GPU. */
export function measureExp2Rate(device: DeviceSpec | 'cpu'): number {
  return native.measureExp2Rate(index(device));
}

/** Copies src into dst (same numel; dtypes may differ), without allocating; an in-place write of dst. */
export function copyInto(dst: Tensor, src: Tensor): void {
  if (dst.numel !== src.numel) throw new RangeError(`copyInto: ${dst.numel} elements into ${src.numel}`);
  native.copy(
    storageOf(dst, 'copyInto', 'dst'),
    dtypeCode(dst.dtype),
    storageOf(src, 'copyInto', 'src'),
    dtypeCode(src.dtype),
    src.numel,
  );
  tensorInternals.markModified(dst);
}

/** Steps per checkpoint of selectiveScan on a device for a shape. */
export function scanChunkLength(
  device: DeviceSpec | 'cpu',
  shape: { batch: number; dim: number; seqlen: number; dstate: number },
): number {
  // A literal, not a spread (docs/ARCHITECTURE.md): the four numbers the addon reads.
  const { batch, dim, seqlen, dstate } = shape;
  return native.scanChunkLength({ device: index(device), batch, dim, seqlen, dstate });
}

// The tfjs adapter's data path (lib/tensor.ts), for its tests.
/** How many tensors exist that were not disposed. */
export const liveTensorCount: () => number = tensorInternals.liveTensorCount;
/** A float32 CPU tensor over the memory of `values`, without a copy. */
export const wrapFloat32Array: (values: Float32Array, shape: number[]) => Tensor = tensorInternals.wrapFloat32Array;
/** The Float32Array a CPU tensor was made over, if any. */
export const float32ArrayOf: (t: Tensor) => Float32Array | undefined = tensorInternals.float32ArrayOf;
/** Runs f with every float32 CPU tensor an op allocates made over a new Float32Array. */
export const allocateInFloat32Arrays: <T>(f: () => T) => T = tensorInternals.allocateInFloat32Arrays;
