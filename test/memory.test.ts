// Memory stays flat in a synchronous training loop (issue #10): native memory is freed by
// dispose() at once, and by the garbage collector (inside the collection, not at the next turn of
// the event loop) for tensors never disposed. Each run is a child process, so that RSS is its own.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const script = path.join(__dirname, 'memory', 'cycles.cjs');

function peakRssMB(...args: string[]): number {
  return peakRssOf(script, ...args);
}

function peakRssOf(file: string, ...args: string[]): number {
  const out = execFileSync(process.execPath, [file, ...args], { encoding: 'utf8' });
  return (JSON.parse(out.trim().split('\n').pop()!) as { peakRssMB: number }).peakRssMB;
}

describe('10,000 synchronous forward+backward cycles at (2, 64, 128, 16)', () => {
  it('stay under 400 MB RSS when every tensor and ctx is disposed', { timeout: 120_000 }, () => {
    expect(peakRssMB('10000')).toBeLessThan(400);
  });
  it('stay bounded when nothing is disposed (the garbage collector frees native memory)', { timeout: 120_000 }, () => {
    expect(peakRssMB('10000', 'nodispose')).toBeLessThan(1000);
  });
});

describe('the other ops in a synchronous loop', () => {
  it('5,000 cycles of ssdScan, packed selectiveScan and causalConv1d forward+backward and causalConv1dUpdate stay under 400 MB RSS', {
    timeout: 120_000,
  }, () => {
    expect(peakRssOf(path.join(__dirname, 'memory', 'other-ops.cjs'), '5000')).toBeLessThan(400);
  });
});

describe('training through selective-scan/tfjs', () => {
  it('1,000 Adam steps of causalConv1d and selectiveScan keep tf.memory() and RSS flat after a warm-up', {
    timeout: 180_000,
  }, () => {
    const out = execFileSync(process.execPath, [path.join(__dirname, 'memory', 'tfjs-training.cjs'), '1000'], {
      encoding: 'utf8',
    });
    const r = JSON.parse(out.trim().split('\n').pop()!) as {
      afterWarmup: { rssMB: number; tensors: number };
      end: { rssMB: number; tensors: number };
      peakRssMB: number;
    };
    expect(r.end.tensors).toBe(r.afterWarmup.tensors);
    // The tensor count catches a tfjs tensor kept per step; RSS the rest (native memory, buffers
    // held outside tfjs). A step's tensors are 256 KB each (2 x 64 x 512 float32): 225 MB per 900 steps.
    expect(r.peakRssMB - r.afterWarmup.rssMB).toBeLessThan(40);
  });
});
