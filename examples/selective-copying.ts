// The Selective Copying task of the Mamba paper (section 4.1.1), trained on the CPU with
// TensorFlow.js and selective-scan: 16 data tokens scattered among noise, then 16 markers, after
// which the model must say the data tokens in order. Generated as the s4 repository's copying
// dataset with variable=True (torch_copying_data): a vocabulary of 16, token 0 the noise, token 15
// the marker, data tokens 1..14.
//
//   npm run example:copying -- --minutes 60                # the paper's model at L = 256, after
//                                                          # a curriculum at L = 64 and 128
//   npm run example:copying -- --control --minutes 30      # the same without selectivity
//   npm run example:copying -- --help
//
// Writes to --out: log.json (the run: settings, machine, commit, curve, held-out accuracy),
// curve.svg (loss and accuracy against steps) and weights/ (MambaModel.save).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
// Registers the gradients of tfjs's own ops (tfjs-core's Node build has none).
import '@tensorflow/tfjs-layers';
import { MambaModel, Rng } from './mamba.js';

export const VOCAB = 16;
export const NOISE = 0;
export const MARKER = VOCAB - 1;
export const DATA_TOKENS = 16;

/**
 * A batch of the task: tokens (batch, seqLen) and the data tokens to recall (batch, 16). The
 * first seqLen - 16 positions hold the 16 data tokens at random, increasing positions among noise;
 * the last 16 hold markers.
 */
export function copyingBatch(rng: Rng, batch: number, seqLen: number): { tokens: Int32Array; targets: Int32Array } {
  const region = seqLen - DATA_TOKENS;
  if (region < DATA_TOKENS) throw new RangeError(`selective copying: seqLen must be at least ${2 * DATA_TOKENS}`);
  const tokens = new Int32Array(batch * seqLen);
  const targets = new Int32Array(batch * DATA_TOKENS);
  const positions = Int32Array.from({ length: region }, (_, i) => i);
  for (let b = 0; b < batch; b++) {
    // The first 16 of a partial Fisher-Yates shuffle: 16 distinct positions, then in order.
    for (let i = 0; i < DATA_TOKENS; i++) {
      const j = rng.int(i, region);
      [positions[i], positions[j]] = [positions[j]!, positions[i]!];
    }
    const chosen = Array.from(positions.subarray(0, DATA_TOKENS)).sort((x, y) => x - y);
    const row = tokens.subarray(b * seqLen, (b + 1) * seqLen);
    row.fill(MARKER, region);
    chosen.forEach((position, i) => {
      const token = rng.int(1, MARKER);
      row[position] = token;
      targets[b * DATA_TOKENS + i] = token;
    });
  }
  return { tokens, targets };
}

/** Mean cross-entropy and token accuracy of the predictions at the 16 marker positions. */
export function copyingLoss(
  model: MambaModel,
  tokens: tf.Tensor2D,
  targets: tf.Tensor2D,
): { loss: tf.Scalar; correct: tf.Scalar } {
  return tf.tidy(() => {
    const [batch, seqLen] = tokens.shape;
    const logits = tf.slice(model.logits(tokens), [0, seqLen - DATA_TOKENS, 0], [batch, DATA_TOKENS, VOCAB]);
    const flat = tf.reshape(logits, [batch * DATA_TOKENS, VOCAB]);
    const labels = tf.reshape(targets, [batch * DATA_TOKENS]);
    const loss = tf.losses.softmaxCrossEntropy(tf.cast(tf.oneHot(labels, VOCAB), 'float32'), flat) as tf.Scalar;
    const correct = tf.sum(tf.cast(tf.equal(tf.argMax(flat, -1), labels), 'float32')) as tf.Scalar;
    return { loss, correct };
  });
}

/** Token accuracy over held-out sequences, without gradients. */
export function evaluate(
  model: MambaModel,
  set: { tokens: Int32Array; targets: Int32Array },
  seqLen: number,
  batch: number,
): number {
  const count = set.targets.length / DATA_TOKENS;
  let correct = 0;
  for (let start = 0; start < count; start += batch) {
    const n = Math.min(batch, count - start);
    const tokens = tf.tensor2d(set.tokens.subarray(start * seqLen, (start + n) * seqLen), [n, seqLen], 'int32');
    const targets = tf.tensor2d(
      set.targets.subarray(start * DATA_TOKENS, (start + n) * DATA_TOKENS),
      [n, DATA_TOKENS],
      'int32',
    );
    const result = copyingLoss(model, tokens, targets);
    correct += result.correct.dataSync()[0]!;
    tf.dispose([tokens, targets, result.loss, result.correct]);
  }
  return correct / set.targets.length;
}

/**
 * Which sequence length to train at: the curriculum's lengths in order, then the final one. A
 * stage ends when the training accuracy, averaged over about the last 50 steps of that stage
 * alone, reaches `advanceAt`, or after `stageSeconds`, so that a model that never gets there
 * (the control) still trains at the final length.
 */
export class Curriculum {
  readonly stages: { step: number; seconds: number; seqLen: number }[];
  #accuracy = 0; // this stage's average, restarted at every stage

  constructor(
    readonly lengths: number[],
    readonly finalLength: number,
    readonly advanceAt: number,
    readonly stageSeconds: number,
  ) {
    this.stages = [{ step: 0, seconds: 0, seqLen: lengths[0] ?? finalLength }];
  }

  get seqLen(): number {
    return this.stages.at(-1)!.seqLen;
  }

  /**
   * Records one step's training accuracy at `seconds` into the run; returns why the stage ended
   * (and moves to the next) or undefined.
   */
  update(step: number, seconds: number, accuracy: number): string | undefined {
    const index = this.stages.length - 1; // the stage of this step
    if (index === this.lengths.length) return undefined;
    this.#accuracy = 0.98 * this.#accuracy + 0.02 * accuracy;
    const reached = this.#accuracy >= this.advanceAt;
    if (!reached && seconds - this.stages.at(-1)!.seconds < this.stageSeconds) return undefined;
    const reason = reached
      ? `training accuracy ${(this.advanceAt * 100).toFixed(0)}% reached at L=${this.seqLen}`
      : `${formatTime(this.stageSeconds)} at L=${this.seqLen} without reaching ${(this.advanceAt * 100).toFixed(0)}%`;
    this.#accuracy = 0;
    this.stages.push({ step, seconds, seqLen: this.lengths[index + 1] ?? this.finalLength });
    return reason;
  }
}

interface Point {
  step: number;
  seconds: number;
  loss: number;
  accuracy: number;
}

interface EvalPoint {
  step: number;
  seconds: number;
  accuracy: number;
}

const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/**
 * Loss (log scale) and accuracy against steps, two panels, as a self-contained SVG; a dotted line
 * where each curriculum stage begins.
 */
export function curveSvg(
  title: string,
  train: Point[],
  held: EvalPoint[],
  stages: { step: number; seqLen: number }[] = [],
): string {
  const width = 720;
  const panel = 240;
  const margin = { left: 64, right: 24, top: 40, gap: 56 };
  const plotWidth = width - margin.left - margin.right;
  const lastStep = Math.max(1, ...train.map((p) => p.step), ...held.map((p) => p.step));
  const x = (step: number) => margin.left + (step / lastStep) * plotWidth;
  const losses = train.map((p) => p.loss).filter((v) => v > 0);
  const [lo, hi] = [Math.log10(Math.min(...losses, 1)), Math.log10(Math.max(...losses, 1))];
  const yLoss = (v: number) => margin.top + panel - ((Math.log10(v) - lo) / Math.max(hi - lo, 1e-9)) * panel;
  const top2 = margin.top + panel + margin.gap;
  const yAcc = (v: number) => top2 + panel - v * panel;
  const line = (points: [number, number][], color: string, dash = '') =>
    `<polyline fill="none" stroke="${color}" stroke-width="1.5"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${points
      .map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`)
      .join(' ')}"/>`;
  const text = (px: number, py: number, s: string, anchor = 'middle') =>
    `<text x="${px.toFixed(1)}" y="${py.toFixed(1)}" text-anchor="${anchor}" font-size="12">${escapeXml(s)}</text>`;
  const parts: string[] = [];
  parts.push(text(width / 2, 20, title));
  for (const [top, label] of [
    [margin.top, 'training loss (log)'],
    [top2, 'token accuracy'],
  ] as const) {
    parts.push(
      `<rect x="${margin.left}" y="${top}" width="${plotWidth}" height="${panel}" fill="none" stroke="#888"/>`,
    );
    parts.push(text(margin.left - 48, top + panel / 2, label, 'start'));
    for (let i = 0; i <= 4; i++) {
      const step = Math.round((lastStep * i) / 4);
      parts.push(text(x(step), top + panel + 16, String(step)));
    }
  }
  for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) {
    parts.push(text(margin.left - 6, yLoss(10 ** e) + 4, `1e${e}`, 'end'));
  }
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(text(margin.left - 6, yAcc(v) + 4, `${v * 100}%`, 'end'));
    parts.push(
      line(
        [
          [margin.left, yAcc(v)],
          [margin.left + plotWidth, yAcc(v)],
        ],
        '#ddd',
      ),
    );
  }
  parts.push(text(width / 2, top2 + panel + 36, 'step'));
  for (const { step, seqLen } of stages) {
    for (const top of [margin.top, top2]) {
      parts.push(
        line(
          [
            [x(step), top],
            [x(step), top + panel],
          ],
          '#999',
          '2 3',
        ),
      );
    }
    parts.push(text(x(step) + 4, margin.top + 14, `L=${seqLen}`, 'start'));
  }
  parts.push(
    line(
      train.map((p) => [x(p.step), yLoss(Math.max(p.loss, 10 ** lo))]),
      '#1f77b4',
    ),
  );
  parts.push(
    line(
      train.map((p) => [x(p.step), yAcc(p.accuracy)]),
      '#1f77b4',
    ),
  );
  parts.push(
    line(
      held.map((p) => [x(p.step), yAcc(p.accuracy)]),
      '#d62728',
      '6 4',
    ),
  );
  parts.push(
    text(margin.left + 8, top2 + 16, 'training batches (smoothed)', 'start').replace('<text', '<text fill="#1f77b4"'),
  );
  parts.push(text(margin.left + 8, top2 + 32, 'held-out sequences', 'start').replace('<text', '<text fill="#d62728"'));
  const height = top2 + panel + 48;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">\n<title>${escapeXml(title)}</title>\n<rect width="100%" height="100%" fill="white"/>\n${parts.join('\n')}\n</svg>\n`;
}

const formatTime = (seconds: number) => {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(h ? 2 : 1, '0');
  return `${h ? `${h}:` : ''}${mm}:${String(s % 60).padStart(2, '0')}`;
};

/** One line of progress: step, bar, training length, loss, accuracy, tokens/s, ETA. */
function progressLine(
  step: number,
  steps: number,
  seqLen: number,
  fraction: number,
  loss: number,
  accuracy: number,
  tokensPerSecond: number,
  eta: number,
): string {
  const width = 24;
  const filled = Math.round(fraction * width);
  const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
  return (
    `step ${String(step).padStart(String(steps).length)}/${steps} [${bar}] ${(fraction * 100).toFixed(0).padStart(3)}% | L ${seqLen} | ` +
    `loss ${loss.toFixed(4)} | acc ${(accuracy * 100).toFixed(1).padStart(5)}% | ` +
    `${Math.round(tokensPerSecond).toLocaleString('en-US')} tok/s | ETA ${formatTime(eta)}`
  );
}

const USAGE = `npm run example:copying -- [options]

  --seq-len N       sequence length: 16 data tokens among noise, then 16 markers (default 256)
  --curriculum LIST shorter lengths trained first, in order, each until the smoothed training
                    accuracy reaches --advance-at; then --seq-len ('none': --seq-len from the
                    start) (default 64,128)
  --advance-at X    the training accuracy that ends a curriculum stage (default 0.9)
  --stage-minutes M a curriculum stage also ends after M minutes, so that a model that never
                    reaches --advance-at still trains at --seq-len (default: a sixth of --minutes)
  --d-model N       model width (default 64)
  --layers N        Mamba blocks (default 2)
  --batch N         sequences per step (default 8)
  --steps N         at most this many steps (default 100000)
  --minutes M       stop after M minutes of training (default 60)
  --lr X            Adam's peak learning rate: a linear warm-up, then a cosine decay to a tenth
                    over the run (its steps or its minutes, whichever ends it first) (default 0.003)
  --warmup N        warm-up steps (default 100)
  --eval N          held-out sequences (default 512)
  --eval-every N    steps between evaluations (default 500)
  --stop-at X       stop early once the held-out accuracy reaches X (default: never)
  --control         the control: Δ, B and C are parameters, not functions of the input
  --backend NAME    wasm (default; its matrix products are fast) or cpu
  --seed N          initialisation and data (default 1)
  --out DIR         where the log, curve and weights go (default examples/out/selective-copying[-control])
  --help`;

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      'seq-len': { type: 'string', default: '256' },
      curriculum: { type: 'string', default: '64,128' },
      'advance-at': { type: 'string', default: '0.9' },
      'stage-minutes': { type: 'string' },
      'd-model': { type: 'string', default: '64' },
      layers: { type: 'string', default: '2' },
      batch: { type: 'string', default: '8' },
      steps: { type: 'string', default: '100000' },
      minutes: { type: 'string', default: '60' },
      lr: { type: 'string', default: '0.003' },
      warmup: { type: 'string', default: '100' },
      eval: { type: 'string', default: '512' },
      'eval-every': { type: 'string', default: '500' },
      'stop-at': { type: 'string' },
      control: { type: 'boolean', default: false },
      backend: { type: 'string', default: 'wasm' },
      seed: { type: 'string', default: '1' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (a.help) {
    console.log(USAGE);
    return;
  }
  const number = (name: keyof typeof a) => {
    const v = Number(a[name]);
    if (!Number.isFinite(v)) throw new RangeError(`--${name} must be a number, got ${a[name]}`);
    return v;
  };
  const seqLen = number('seq-len');
  // Short sequences first. From scratch at L = 256 the model sits at chance (loss ln 14) for
  // thousands of steps: the 16 data tokens are 16 of 240 positions and the initial state mixes
  // them with the noise. At L = 64 it learns within a few hundred steps, and after a stage at
  // L = 128 what it learnt carries over to L = 256 within a few hundred more (the recorded run).
  const curriculum =
    a.curriculum === 'none'
      ? []
      : a.curriculum!.split(',').map((v) => {
          const n = Number(v);
          if (!Number.isInteger(n) || n < 2 * DATA_TOKENS || n >= seqLen) {
            throw new RangeError(
              `--curriculum must list integer lengths from ${2 * DATA_TOKENS} to below --seq-len ${seqLen}, got ${v}`,
            );
          }
          return n;
        });
  const advanceAt = number('advance-at');
  const batch = number('batch');
  const steps = number('steps');
  const seconds = number('minutes') * 60;
  const stageSeconds = a['stage-minutes'] === undefined ? seconds / 6 : number('stage-minutes') * 60;
  const lr = number('lr');
  const warmup = number('warmup');
  const evalEvery = number('eval-every');
  const stopAt = a['stop-at'] === undefined ? Number.POSITIVE_INFINITY : number('stop-at');
  const seed = number('seed');
  const selective = !a.control;
  const out = a.out ?? path.join('examples', 'out', selective ? 'selective-copying' : 'selective-copying-control');

  if (!(await tf.setBackend(a.backend!))) throw new Error(`the tfjs backend ${a.backend} could not start`);
  const model = new MambaModel(
    { vocabSize: VOCAB, dModel: number('d-model'), nLayer: number('layers'), selective },
    seed,
  );
  const optimizer = tf.train.adam(lr);
  // tfjs's Adam reads its learning rate at every step; the schedule sets it.
  const setLearningRate = (value: number) => {
    (optimizer as unknown as { learningRate: number }).learningRate = value;
  };
  const trainRng = new Rng(seed * 7919 + 1);
  const heldOut = copyingBatch(new Rng(seed * 7919 + 2), number('eval'), seqLen);

  let commit: string | null = null;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    // not a checkout
  }
  const settings = {
    task: 'selective copying',
    seqLen,
    dataTokens: DATA_TOKENS,
    vocab: VOCAB,
    curriculum,
    advanceAt,
    stageMinutes: stageSeconds / 60,
    batch,
    lr,
    warmup,
    selective,
    backend: tf.getBackend(),
    seed,
    model: model.config,
    parameters: model.parameterCount(),
  };
  const machine = { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version, commit };
  console.error(
    `selective copying, L=${seqLen}, ${selective ? 'Mamba' : 'control (no selectivity)'}: ` +
      `${settings.parameters.toLocaleString('en-US')} parameters, batch ${batch}, tfjs ${tf.getBackend()} backend, ` +
      `${machine.cores} cores (${machine.cpu})`,
  );

  const train: Point[] = [];
  const held: EvalPoint[] = [];
  const interactive = process.stderr.isTTY;
  let smoothedLoss = Number.NaN;
  let smoothedAccuracy = 0;
  let lastPrint = 0;
  const started = performance.now();
  const elapsed = () => (performance.now() - started) / 1000;
  let step = 0;
  let trainingSeconds = 0; // training only, without the evaluations
  let tokensSeen = 0;
  const schedule = new Curriculum(curriculum, seqLen, advanceAt, stageSeconds);
  const runEval = () => {
    const accuracy = evaluate(model, heldOut, seqLen, 32);
    held.push({ step, seconds: elapsed(), accuracy });
    if (interactive) process.stderr.write('\n');
    console.error(`step ${step}: held-out token accuracy ${(accuracy * 100).toFixed(2)}% (${formatTime(elapsed())})`);
    return accuracy;
  };
  while (step < steps && elapsed() < seconds) {
    const t0 = performance.now();
    // Without the decay the accuracy swings by tens of points late in a run.
    const progress = Math.min(1, Math.max(step / steps, elapsed() / seconds));
    setLearningRate(lr * Math.min((step + 1) / warmup, 0.1 + 0.45 * (1 + Math.cos(Math.PI * progress))));
    const trainLen = schedule.seqLen;
    const data = copyingBatch(trainRng, batch, trainLen);
    const tokens = tf.tensor2d(data.tokens, [batch, trainLen], 'int32');
    const targets = tf.tensor2d(data.targets, [batch, DATA_TOKENS], 'int32');
    let correct: tf.Scalar | undefined;
    const loss = optimizer.minimize(
      () => {
        const r = copyingLoss(model, tokens, targets);
        correct = tf.keep(r.correct);
        return r.loss;
      },
      true,
      model.variables(),
    )!;
    const lossValue = loss.dataSync()[0]!;
    const accuracy = correct!.dataSync()[0]! / (batch * DATA_TOKENS);
    tf.dispose([tokens, targets, loss, correct!]);
    step++;
    tokensSeen += batch * trainLen;
    trainingSeconds += (performance.now() - t0) / 1000;
    smoothedLoss = Number.isNaN(smoothedLoss) ? lossValue : 0.95 * smoothedLoss + 0.05 * lossValue;
    smoothedAccuracy = step === 1 ? accuracy : 0.95 * smoothedAccuracy + 0.05 * accuracy;
    const stageEnded = schedule.update(step, elapsed(), accuracy);
    if (stageEnded) {
      if (interactive) process.stderr.write('\n');
      console.error(`step ${step}: ${stageEnded}, now at L=${schedule.seqLen} (${formatTime(elapsed())})`);
    }
    if (step % 10 === 0 || step === 1) {
      train.push({ step, seconds: elapsed(), loss: smoothedLoss, accuracy: smoothedAccuracy });
    }
    const now = elapsed();
    const fraction = Math.max(step / steps, now / seconds);
    const eta = fraction > 0 ? now / fraction - now : 0;
    if (interactive ? now - lastPrint > 0.25 : step % 50 === 0) {
      lastPrint = now;
      const tokensPerSecond = tokensSeen / trainingSeconds;
      const line = progressLine(
        step,
        steps,
        schedule.seqLen,
        fraction,
        smoothedLoss,
        smoothedAccuracy,
        tokensPerSecond,
        eta,
      );
      if (interactive) process.stderr.write(`\r${line}`);
      else console.error(line);
    }
    if (step % evalEvery === 0 && runEval() >= stopAt) break;
  }
  const accuracy = held.at(-1)?.step === step ? held.at(-1)!.accuracy : runEval();
  const result = {
    steps: step,
    trainingSeconds: Math.round(trainingSeconds),
    seconds: Math.round(elapsed()),
    stepsPerSecond: step / trainingSeconds,
    tokensPerSecond: tokensSeen / trainingSeconds,
    stages: schedule.stages,
    heldOutAccuracy: accuracy,
    heldOutSequences: heldOut.targets.length / DATA_TOKENS,
  };
  await fs.mkdir(out, { recursive: true });
  await model.save(path.join(out, 'weights'));
  await fs.writeFile(
    path.join(out, 'log.json'),
    `${JSON.stringify({ settings, machine, result, train, heldOut: held }, null, 2)}\n`,
  );
  const title =
    `Selective copying, L=${seqLen}, ${selective ? 'Mamba' : 'control'} (${model.config.nLayer} layers, d_model ${model.config.dModel}): ` +
    `${(accuracy * 100).toFixed(1)}% held-out after ${step} steps, ${formatTime(elapsed())}`;
  await fs.writeFile(path.join(out, 'curve.svg'), curveSvg(title, train, held, schedule.stages));
  console.error(
    `done: ${step} steps in ${formatTime(elapsed())} (${result.stepsPerSecond.toFixed(2)} steps/s, ` +
      `${Math.round(result.tokensPerSecond).toLocaleString('en-US')} tok/s); held-out token accuracy ${(accuracy * 100).toFixed(2)}%; ` +
      `wrote ${path.join(out, 'log.json')}, curve.svg, weights/`,
  );
  model.dispose();
  optimizer.dispose();
}

if (require.main === module) {
  main().catch((error) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
