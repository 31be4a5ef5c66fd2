// The shipped .d.ts files compile for a user with TypeScript 7's defaults: `tsc --strict --module
// nodenext`, no @types/node (TypeScript 7 includes no @types by default), no lib settings, from
// an ES module (.mts, the package's "import" types, dist/index.d.mts) and from a CommonJS module
// (.cts, its "require" types, dist/index.d.ts). The consumer uses every export, so each
// declaration file is checked; a line that must not compile shows that the types are not `any`.
import { afterAll, describe, expect, it } from 'vitest';
import { consumerProject } from './helpers/consumer.js';

const consumer = `import {
  Tensor, ScanContext, selectiveScan, selectiveScanBackward, selectiveStateUpdate, cuda, buildInfo, setNumThreads,
  type DType, type DeviceSpec, type Device, type ScanOptions, type ScanResult, type ScanBackwardOptions,
  type ScanGradients, type StateUpdateOptions, type BuildInfo, type CudaMemoryInfo, type CodedError, type ErrorCode,
} from 'selective-scan';

const dtype: DType = 'bfloat16';
const device: DeviceSpec = cuda.isAvailable() ? 'cuda:0' : 'cpu';
const u = Tensor.from([1, 2, 3, 4], [1, 2, 2], { dtype, device });
const A = Tensor.zeros([2, 1], { device });
const options: ScanOptions = { deltaSoftplus: true, saveForBackward: true };
const result: ScanResult = selectiveScan(u, u, A, A, A, options);
const where: Device = result.out.device;
const values: Float32Array = result.out.dataSync();
const later: Promise<Float32Array> = result.out.data();
const backwardOptions: ScanBackwardOptions = { deterministic: true };
if (result.ctx instanceof ScanContext) {
  const grads: ScanGradients = selectiveScanBackward(result.ctx, result.out, backwardOptions);
  grads.dA[Symbol.dispose]();
  result.ctx.dispose();
}
const stepOptions: StateUpdateOptions = { stateBatchIndices: Int32Array.from([0]) };
const y: Tensor = selectiveStateUpdate(A, A, A, A, A, A, stepOptions);
const info: BuildInfo = buildInfo();
const memory: CudaMemoryInfo | undefined = cuda.isAvailable() ? cuda.memoryInfo() : undefined;
const synchronized: Promise<void> = cuda.synchronize();
setNumThreads(info.cpuThreads);
const code: ErrorCode = 'ERR_DISPOSED';
const isCoded = (error: unknown): error is CodedError => error instanceof Error && 'code' in error;
// @ts-expect-error: int8 is not a dtype of the package
Tensor.zeros([1], { dtype: 'int8' });

export { where, values, later, y, memory, synchronized, code, isCoded };
`;

describe('the shipped type declarations', () => {
  const project = consumerProject(
    { 'package.json': '{ "name": "consumer", "private": true }', 'esm.mts': consumer, 'cjs.cts': consumer },
    'copy-types',
  );
  afterAll(() => project.remove());

  it('are checked with TypeScript 7', () => {
    expect(project.tsc(['--version']).output).toMatch(/^Version 7\./);
  });

  it('compile under tsc --strict --module nodenext with no @types/node, as ESM and as CommonJS', () => {
    const { ok, output } = project.tsc(['--strict', '--module', 'nodenext', '--noEmit', 'esm.mts', 'cjs.cts']);
    expect(output).toBe('');
    expect(ok).toBe(true);
  });

  it('catch a misuse (the test can fail)', () => {
    const misuse = "import { Tensor } from 'selective-scan';\nTensor.zeros([1], { dtype: 'int8' });\n";
    const checked = consumerProject({ 'misuse.mts': misuse }, 'copy-types');
    try {
      const { ok, output } = checked.tsc(['--strict', '--module', 'nodenext', '--noEmit', 'misuse.mts']);
      expect(ok).toBe(false);
      expect(output).toMatch(/'"int8"' is not assignable/);
    } finally {
      checked.remove();
    }
  });
});
