// Ops on several JavaScript threads while another changes the CPU thread count. Run by
// test/concurrency.test.ts in a child process (a crash is a signal there, not a dead test runner):
//
//   node test/concurrency/threads.cjs <workers> <iterations>
//
// The main thread computes the expected results, starts <workers> worker threads that each run a
// forward, a backward and a decoding step <iterations> times and post a checksum of every result,
// and calls setNumThreads (1 to 7) in a loop until they finish. The CPU backend's results do not
// depend on the thread count, so every checksum must equal the expected one bit for bit. Prints
// one JSON line: { ops, mismatches, threadChanges, ms }. SELECTIVE_SCAN_PACKAGE picks the package
// (default: this repository).
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const path = require('node:path');

const s = require(process.env.SELECTIVE_SCAN_PACKAGE || path.join(__dirname, '..', '..'));

// Bit patterns of every output value, folded into one string (exact comparison, NaN included).
function checksum(tensors) {
  let h = 0x811c9dc5;
  for (const t of tensors) {
    const bits = new Uint32Array(t.dataSync().buffer);
    for (let i = 0; i < bits.length; i++) h = Math.imul(h ^ bits[i], 0x01000193) >>> 0;
  }
  return h.toString(16);
}

function runOps() {
  const [batch, dim, L, N] = [2, 64, 256, 16];
  const values = (n, scale) => Float32Array.from({ length: n }, (_, i) => scale * Math.sin(i * 0.37 + n));
  const u = s.Tensor.from(values(batch * dim * L, 1), [batch, dim, L]);
  const delta = s.Tensor.from(values(batch * dim * L, 0.5), [batch, dim, L]);
  const A = s.Tensor.from(
    values(dim * N, 1).map((x) => -1 - x * x),
    [dim, N],
  );
  const B = s.Tensor.from(values(batch * N * L, 1), [batch, N, L]);
  const C = s.Tensor.from(values(dim * N, 1), [dim, N]);
  const { out, lastState, ctx } = s.selectiveScan(u, delta, A, B, C, {
    deltaSoftplus: true,
    returnLastState: true,
    saveForBackward: true,
  });
  const grads = s.selectiveScanBackward(ctx, out);
  const x = s.Tensor.from(values(batch * dim, 1), [batch, dim]);
  const Bt = s.Tensor.from(values(batch * N, 1), [batch, N]);
  const y = s.selectiveStateUpdate(lastState, x, x, A, Bt, Bt, { dtSoftplus: true });
  const outputs = [out, lastState, y, ...Object.values(grads)];
  const sum = checksum(outputs);
  for (const t of [u, delta, A, B, C, x, Bt, ...outputs]) t.dispose();
  ctx.dispose();
  return sum;
}

if (isMainThread) {
  const workers = Number(process.argv[2] ?? 1);
  const iterations = Number(process.argv[3] ?? 100);
  const initialThreads = s.buildInfo().cpuThreads;
  const expected = runOps();
  const start = Date.now();
  let ops = 0;
  let mismatches = 0;
  let running = workers;
  let threadChanges = 0;
  for (let w = 0; w < workers; w++) {
    const worker = new Worker(__filename, { workerData: { iterations } });
    worker.on('message', (sum) => {
      ops++;
      if (sum !== expected) mismatches++;
    });
    worker.on('error', (error) => {
      console.error(error);
      process.exitCode = 1;
    });
    worker.on('exit', () => {
      running--;
    });
  }
  // Change the thread count as fast as possible, letting the workers' messages in between.
  (function churn() {
    for (let i = 0; i < 20; i++) s.setNumThreads(1 + (threadChanges++ % 7));
    if (running > 0) {
      setImmediate(churn);
      return;
    }
    s.setNumThreads(initialThreads);
    console.log(JSON.stringify({ ops, mismatches, threadChanges, ms: Date.now() - start }));
  })();
} else {
  for (let i = 0; i < workerData.iterations; i++) parentPort.postMessage(runOps());
}
