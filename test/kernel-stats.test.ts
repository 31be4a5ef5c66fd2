// The counting behind `npm run kernel-stats` (bench/kernel-stats.mjs), on a hand-written PTX
// kernel whose counts are known by reading it: the parser, the CFG and its loops, the static count
// per ex2, the interpreter's issue counting (both sides of a branch the warp's lanes split on, one
// side of a branch they agree on, predicated-off instructions), the values it computes, and the
// occupancy and ptxas-report arithmetic. One part compiles a small CUDA kernel with nvcc and runs
// its PTX; it is skipped, with the reason, where there is no nvcc.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { occupancy, GPUS } from '../bench/lib/gpu-model.mjs';
import { measureStateLoop } from '../bench/lib/kernel-sim.mjs';
import { buildCfg, hotLoops, naturalLoops } from '../bench/lib/ptx-cfg.mjs';
import {
  NVCC_FLAGS,
  findNvcc,
  kernelLabel,
  parsePtxasLog,
  stepsPerLane,
  templateArguments,
} from '../bench/lib/ptx-build.mjs';
import { parsePtx } from '../bench/lib/ptx-parse.mjs';
import { GlobalMemory, f32, runBlock } from '../bench/lib/ptx-sim.mjs';

// A state loop of 4 iterations with one ex2 each. Lanes 0-15 run two more instructions per
// iteration (a branch the warp splits on); a kernel argument (uniform) decides whether a shuffle
// and an add run; a predicated add runs on no lane but is issued. Per iteration (15 instructions in
// the loop's blocks):
//   flag 0: 6 + 2 (lanes 0-15) + 2 + 0 + 3 = 13 issues; lanes 16-31 take part in 11 of them
//   flag 1: 15 issues.
const SNIPPET = `
.version 8.0
.target sm_90
.address_size 64

.visible .entry loopKernel(
	.param .u64 loopKernel_param_0,
	.param .u32 loopKernel_param_1
)
.maxntid 32, 1, 1
{
	.reg .pred 	%p<4>;
	.reg .b32 	%r<8>;
	.reg .f32 	%f<6>;
	.reg .b64 	%rd<4>;

	ld.param.u64 	%rd1, [loopKernel_param_0];
	ld.param.u32 	%r1, [loopKernel_param_1];
	mov.u32 	%r2, %tid.x;
	and.b32 	%r3, %r2, 31;
	cvta.to.global.u64 	%rd2, %rd1;
	mov.f32 	%f1, 0f00000000;
	mov.u32 	%r4, 0;
	setp.eq.s32 	%p3, %r3, 99;
$L__BB0_1:
	cvt.rn.f32.u32 	%f2, %r4;
	ex2.approx.f32 	%f3, %f2;
	add.f32 	%f1, %f1, %f3;
	@%p3 add.f32 	%f1, %f1, 0f42C80000;
	setp.ge.u32 	%p1, %r3, 16;
	@%p1 bra 	$L__BB0_3;
	mul.f32 	%f1, %f1, 0f3F000000;
	add.f32 	%f1, %f1, 0f3F800000;
$L__BB0_3:
	setp.eq.s32 	%p2, %r1, 0;
	@%p2 bra 	$L__BB0_5;
	shfl.sync.bfly.b32 	%r5|%p0, %r3, 1, 31, -1;
	add.s32 	%r6, %r5, 1;
$L__BB0_5:
	add.s32 	%r4, %r4, 1;
	setp.lt.u32 	%p2, %r4, 4;
	@%p2 bra 	$L__BB0_1;
	mul.wide.u32 	%rd3, %r2, 4;
	add.s64 	%rd2, %rd2, %rd3;
	st.global.f32 	[%rd2], %f1;
	ret;
}
`;

const OUT = 0x10000;
const hex = (value: number, bytes: number) => {
  let s = '';
  for (let i = 0; i < bytes; i += 1)
    s += ((Math.floor(value / 2 ** (8 * i)) & 0xff) >>> 0).toString(16).padStart(2, '0');
  return s;
};
const launchOf = (flag: number) => ({
  grid: [1, 1, 1],
  block: [32, 1, 1],
  sharedBytes: 0,
  args: [hex(OUT, 8), hex(flag, 4)],
});
const captured = {
  buffers: [{ name: 'out', address: OUT, bytes: 32 * 4, dtype: 'float32', fill: 'zero' }],
  allocs: [],
};

describe('kernel-stats: PTX parsing and static counts', () => {
  const module = parsePtx(SNIPPET);
  const fn = module.functions[0];

  it('reads the kernel, its parameters, launch bounds and labels', () => {
    expect(module.functions).toHaveLength(1);
    expect(fn.name).toBe('loopKernel');
    expect(fn.kind).toBe('entry');
    expect(fn.params.map((p) => p.size)).toEqual([8, 4]);
    expect(fn.directives.maxntid).toEqual([32, 1, 1]);
    expect(fn.instructions).toHaveLength(27);
    expect([...fn.labels.keys()]).toEqual(['$L__BB0_1', '$L__BB0_3', '$L__BB0_5']);
  });

  it('reads -lineinfo line directives and inline-asm registers named without %', () => {
    const text = `
.visible .entry k(.param .u64 k_param_0)
{
	.reg .b32 	%r<3>;
	.loc	1 10 5
	mov.u32 	%r1, 7;
	.loc	1 11 5, function_name $L__info_string0, inlined_at 1 12 3
	{  .reg .pred p;  .reg .b32 r0;  setp.gt.u32 p, %r1, 3;  mov.b32 r0, 0;  @p add.u32 r0, r0, %r1;  mov.b32 %r2, r0;}
	ret;
}`;
    const [k] = parsePtx(text).functions;
    expect(k.instructions.map((i) => i.opcode)).toEqual([
      'mov.u32',
      'setp.gt.u32',
      'mov.b32',
      'add.u32',
      'mov.b32',
      'ret',
    ]);
    expect(k.instructions[3].guard).toEqual({ reg: 'p', negated: false });
    expect(k.instructions[3].operands[0]).toEqual({ kind: 'reg', name: 'r0' });
  });

  it('finds the state loop and counts its body per ex2, every branch side once', () => {
    const cfg = buildCfg(fn);
    expect(cfg.blocks.map((b: { label: string }) => b.label)).toEqual([
      '(entry)',
      '$L__BB0_1',
      '$L__BB0_1+1',
      '$L__BB0_3',
      '$L__BB0_3+1',
      '$L__BB0_5',
      '$L__BB0_5+1',
    ]);
    expect(naturalLoops(cfg)).toHaveLength(1);
    const [loop] = hotLoops(fn, cfg);
    expect(loop.label).toBe('$L__BB0_1');
    expect(loop.instructions).toBe(15);
    expect(loop.ex2).toBe(1);
    expect(loop.staticPerEx2).toBe(15);
  });
});

describe('kernel-stats: the interpreter', () => {
  const module = parsePtx(SNIPPET);
  const fn = module.functions[0];

  it('counts both sides of a divergent branch and one side of a uniform one', () => {
    const result = measureStateLoop(module, fn, captured, launchOf(0));
    if (!('stateLoop' in result) || !result.stateLoop) throw new Error('no state loop measured');
    const s = result.stateLoop;
    expect(s.iterations).toBe(4);
    expect(s.issuesPerIteration).toBe(13);
    expect(s.elementStates).toBe(4 * 32); // one ex2 per lane and iteration
    expect(s.perElementState).toBe(13); // 13 warp issues x 32 lanes / 32 ex2
    expect(s.fullChunk).toBe(true);
    expect(s.lanePath).toEqual({ min: 11, max: 13, minLane: 16, maxLane: 0 });
    expect(s.laneUtilization).toBeCloseTo((11 * 32 + 2 * 16) / (13 * 32), 12);
    expect(s.skippedBlocks).toEqual(['$L__BB0_3+1']);
    const withShuffle = measureStateLoop(module, fn, captured, launchOf(1));
    if (!('stateLoop' in withShuffle) || !withShuffle.stateLoop) throw new Error('no state loop measured');
    expect(withShuffle.stateLoop.issuesPerIteration).toBe(15);
    expect(withShuffle.stateLoop.skippedBlocks).toEqual([]);
  });

  it('computes what the kernel computes', () => {
    const memory = new GlobalMemory([{ name: 'out', address: OUT, bytes: 32 * 4 }]);
    const params = new Uint8Array(12);
    new DataView(params.buffer).setBigUint64(0, BigInt(OUT), true);
    const { issues } = runBlock(module, fn, { ...launchOf(0), params }, memory);
    expect(issues).toBe(8 + 4 * 13 + 4);
    const out = (lane: number) => {
      const { dv, off } = memory.view(OUT + 4 * lane, 4);
      return f32(dv.getUint32(off, true));
    };
    let h = 0;
    for (let n = 0; n < 4; n += 1) h = (h + 2 ** n) * 0.5 + 1;
    expect(out(0)).toBe(h); // 7.1875
    expect(out(15)).toBe(h);
    expect(out(16)).toBe(1 + 2 + 4 + 8);
  });

  it('names an access outside every buffer', () => {
    const memory = new GlobalMemory([]);
    const params = new Uint8Array(12);
    new DataView(params.buffer).setBigUint64(0, 0x20000n, true);
    expect(() => runBlock(module, fn, { ...launchOf(0), params }, memory)).toThrow(/0x20000 outside every buffer/);
  });
});

describe('kernel-stats: reports and occupancy', () => {
  it('reads ptxas -v', () => {
    const log = [
      "ptxas info    : Compiling entry function '_Z6kernelPf' for 'sm_90'",
      'ptxas info    : Function properties for _Z6kernelPf',
      '    16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads',
      'ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 360 bytes cmem[0]',
    ].join('\n');
    expect(parsePtxasLog(log).get('_Z6kernelPf')).toEqual({
      registers: 40,
      barriers: 1,
      stack: 16,
      spillStores: 8,
      spillLoads: 12,
      sharedStatic: 2048,
      constant0: 360,
    });
  });

  it('labels kernels by their template arguments', () => {
    const name =
      'void ss::cuda::(anonymous namespace)::scanForwardKernel<(ss::DType)2, 8>(ss::cuda::(anonymous namespace)::ForwardArgs)';
    expect(kernelLabel(name, { 0: 'f32', 1: 'f16', 2: 'bf16' })).toBe('scanForwardKernel<bf16, 8>');
    expect(kernelLabel('ss::cuda::(anonymous namespace)::probe()')).toBe('probe');
  });

  it('reads the steps per lane of the forward and backward scan kernels (ITEMS, the second template argument)', () => {
    const dtypes = { 0: 'f32', 1: 'f16', 2: 'bf16' };
    const backward =
      'void ss::cuda::(anonymous namespace)::scanBackwardKernel<(ss::DType)2, 4, false>(ss::cuda::(anonymous namespace)::BackwardArgs)';
    expect(kernelLabel(backward, dtypes)).toBe('scanBackwardKernel<bf16, 4, false>');
    expect(templateArguments('scanBackwardKernel<bf16, 4, false>')).toEqual(['bf16', '4', 'false']);
    expect(stepsPerLane('scanBackwardKernel<bf16, 4, false>')).toBe('4');
    expect(stepsPerLane('scanBackwardKernel<f32, 16, true>')).toBe('16');
    expect(stepsPerLane('scanForwardKernel<bf16, 8>')).toBe('8');
    // Without the dtype names: the cast's parentheses are one argument.
    expect(stepsPerLane(kernelLabel(backward))).toBe('4');
    expect(templateArguments('k<a<1, 2>, 3>')).toEqual(['a<1, 2>', '3']);
    for (const label of ['probe', 'reduceChannelSumsKernel', 'k<bf16>', 'k<bf16, false>', undefined]) {
      expect(stepsPerLane(label), String(label)).toBe('?');
    }
  });

  it('computes occupancy as cuda_occupancy.h does', () => {
    const sm90 = GPUS.H200.sm;
    // 128 registers x 32 lanes per warp: 4 warps per sub-partition, 16 per SM: 4 blocks of 128.
    expect(occupancy(sm90, { registers: 128 }, { threads: 128, dynamicShared: 1024 })).toMatchObject({
      blocks: 4,
      occupancy: 0.25,
      limitedBy: 'registers',
    });
    // 80 registers: 2560 per warp, 6 warps per sub-partition: 6 blocks, 37.5 %.
    expect(occupancy(sm90, { registers: 80 }, { threads: 128 }).occupancy).toBe(0.375);
    // Shared memory: (100 KiB + the 1 KiB reserve) per block leaves room for 2 on sm_90, 1 on sm_80.
    expect(occupancy(sm90, { registers: 32 }, { threads: 256, dynamicShared: 100 * 1024 })).toMatchObject({
      blocks: 2,
      limitedBy: 'shared memory',
    });
    expect(occupancy(GPUS.A100.sm, { registers: 32 }, { threads: 256, dynamicShared: 100 * 1024 }).blocks).toBe(1);
    expect(occupancy(sm90, { registers: 32 }, { threads: 1024 })).toMatchObject({ blocks: 2, occupancy: 1 });
  });
});

// A CUDA kernel through nvcc, as kernel-stats compiles the sources: nvcc's own PTX must parse, its
// loops be found and the interpreter reproduce the kernel's results.
const nvcc = findNvcc();
describe.skipIf(Boolean(nvcc.missing))(
  `kernel-stats: nvcc's PTX${nvcc.missing ? ` (skipped: ${nvcc.missing})` : ''}`,
  () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kernel-stats-test-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('parses, finds the exp2 loops and runs them as the kernel would', () => {
      const source = path.join(dir, 'decay.cu');
      writeFileSync(
        source,
        `__global__ void __launch_bounds__(64) decay(float *out, const float *a, int n) {
         const int t = blockIdx.x * blockDim.x + threadIdx.x;
         float h = 0.0f;
         for (int i = 0; i < n; ++i) h = exp2f(a[i] * -0.5f) * h + float(t);
         out[t] = h;
       }\n`,
      );
      const ptxFile = path.join(dir, 'decay.ptx');
      execFileSync(nvcc.nvcc!, [...NVCC_FLAGS, '-arch=sm_90', '-ptx', source, '-o', ptxFile]);
      const module = parsePtx(readFileSync(ptxFile, 'utf8'));
      const fn = module.functions.find((f) => f.kind === 'entry');
      if (!fn) throw new Error('no kernel in the PTX');
      expect(fn.directives.maxntid?.[0]).toBe(64);
      const loops = hotLoops(fn);
      expect(loops.length).toBeGreaterThan(0);
      for (const loop of loops) expect(loop.staticPerEx2).toBe(loop.instructions / loop.ex2);

      const n = 9;
      const a = Array.from({ length: n }, (_, i) => (i % 3) - 0.25);
      const A = 0x100000;
      const O = 0x200000;
      const memory = new GlobalMemory([
        {
          name: 'a',
          address: A,
          bytes: 4 * n,
          fill: (view: DataView, offset: number) => {
            for (let k = 0; k < view.byteLength; k += 4) view.setFloat32(k, a[(offset + k) / 4], true);
          },
        },
        { name: 'out', address: O, bytes: 4 * 64 },
      ]);
      const params = new Uint8Array(24);
      const view = new DataView(params.buffer);
      view.setBigUint64(0, BigInt(O), true);
      view.setBigUint64(8, BigInt(A), true);
      view.setInt32(16, n, true);
      runBlock(module, fn, { grid: [1, 1, 1], block: [64, 1, 1], sharedBytes: 0, params }, memory);
      for (const t of [0, 1, 37, 63]) {
        let h = 0;
        for (const x of a) h = Math.fround(Math.fround(2 ** Math.fround(x * -0.5)) * h + t);
        const { dv, off } = memory.view(O + 4 * t, 4);
        expect(Math.abs(dv.getFloat32(off, true) - h)).toBeLessThanOrEqual(1e-6 * Math.max(1, h));
      }
    });
  },
);
