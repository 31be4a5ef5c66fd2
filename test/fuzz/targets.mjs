// What the fuzzer calls: one entry per public function of the package (everything lib/index.ts
// exports at run time, Tensor's methods and getters, the cuda object's members). An entry says
// how to make valid arguments, how to call, and what a result must look like:
//
//   name       the function, as error messages must name it ('Tensor.to', 'selectiveScan')
//   export     the export it belongs to (test/fuzz.test.ts checks that every export has an entry)
//   valid(g)   valid arguments: { args, receiver? }; g makes tensors (test/fuzz/batch.mjs, Maker)
//   call(api, args, receiver)
//   options    the index of the options argument, and optionKeys its keys
//   inPlace    the index of an argument the function writes (it must be unchanged after a throw)
//   check(result, args)   throws if a successful result is malformed
//   outputs(result, args) what two equivalent calls must agree on, bit for bit
//
// A new op joins the fuzzer with one entry here.
import { types } from 'node:util';

/** Every element finite, for results of valid inputs. */
function finite(t, what) {
  const values = t.dataSync();
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) throw new Error(`${what}[${i}] = ${values[i]}`);
  }
}

function expectShape(t, shape, what) {
  if (JSON.stringify(t.shape) !== JSON.stringify(shape)) {
    throw new Error(`${what}: shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(shape)}`);
  }
}

/** The bits of every tensor among values (undefined and other values as they are). */
function bitsOf(values) {
  return values.map((v) =>
    v && typeof v.dataSync === 'function' ? Array.from(new Uint32Array(v.dataSync().buffer)) : v,
  );
}

const DTYPES = ['float32', 'float16', 'bfloat16'];

// ---- Tensors -------------------------------------------------------------------------------------

const creation = [
  {
    name: 'Tensor.from',
    export: 'Tensor',
    options: 2,
    optionKeys: ['dtype', 'device'],
    valid(g) {
      const shape = g.shape();
      const n = shape.reduce((a, b) => a * b, 1);
      const values = g.rng.pick([
        () => g.rng.values(n),
        () => Array.from(g.rng.values(n)),
        () => Float64Array.from(g.rng.values(n)),
      ])();
      return { args: [values, shape, { dtype: g.rng.pick(DTYPES), device: g.device }] };
    },
    call: (api, [values, shape, opts]) => api.Tensor.from(values, shape, opts),
    check(t, [values, shape]) {
      expectShape(t, shape, 'result');
      if (t.dataSync().length !== t.numel) throw new Error('dataSync length differs from numel');
      if (t.dtype === 'float32' && Array.isArray(values)) {
        const got = t.dataSync();
        for (let i = 0; i < got.length; i++)
          if (!Object.is(got[i], Math.fround(values[i]))) throw new Error(`value ${i}`);
      }
    },
    outputs: (t) => [t.shape, t.dtype, t.device, ...bitsOf([t])],
  },
  {
    name: 'Tensor.fromBits',
    export: 'Tensor',
    options: 2,
    optionKeys: ['dtype', 'device'],
    valid(g) {
      const shape = g.shape();
      const bits = Uint16Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => g.rng.int(0x7c00));
      return { args: [bits, shape, { dtype: g.rng.pick(['float16', 'bfloat16']), device: g.device }] };
    },
    call: (api, [bits, shape, opts]) => api.Tensor.fromBits(bits, shape, opts),
    check(t, [, shape]) {
      expectShape(t, shape, 'result');
      if (t.bits().length !== t.numel) throw new Error('bits length differs from numel');
    },
    outputs: (t) => [t.shape, t.dtype, Array.from(t.bits())],
  },
  {
    name: 'Tensor.zeros',
    export: 'Tensor',
    options: 1,
    optionKeys: ['dtype', 'device'],
    valid: (g) => ({ args: [g.shape(), { dtype: g.rng.pick(DTYPES), device: g.device }] }),
    call: (api, [shape, opts]) => api.Tensor.zeros(shape, opts),
    check(t, [shape]) {
      expectShape(t, shape, 'result');
      if (t.dataSync().some((v) => v !== 0)) throw new Error('not zeros');
    },
    outputs: (t) => [t.shape, t.dtype, t.device, ...bitsOf([t])],
  },
  {
    // Without a GPU every call fails (CUDA unavailable); with one, the valid pointer is a tensor's.
    name: 'Tensor.fromDevicePointer',
    export: 'Tensor',
    options: 2,
    optionKeys: ['dtype', 'device', 'owner'],
    valid(g) {
      if (g.device === 'cpu') return { args: [4096n, [2], { dtype: 'float32' }], fails: 'ERR_CUDA_UNAVAILABLE' };
      const t = g.tensor(g.shape());
      return { args: [t.devicePointer, [...t.shape], { dtype: t.dtype, device: t.device, owner: t }] };
    },
    call: (api, [ptr, shape, opts]) => api.Tensor.fromDevicePointer(ptr, shape, opts),
    // Never read: a hostile but aligned pointer makes a tensor over memory that is not there.
    check(t, [, shape]) {
      expectShape(t, shape, 'result');
    },
    outputs: (t) => [t.shape, t.dtype, t.device],
  },
  {
    name: 'Tensor',
    export: 'Tensor',
    valid: () => ({ args: [], fails: TypeError }),
    call: (api, args) => new api.Tensor(...args),
    check() {},
    outputs: () => [],
  },
];

// Methods and getters of a class, called on a receiver (a live object, unless a mutation replaces
// it): `receiver(g)` makes one; `args(g, receiver)` the arguments.
function member(cls, name, { receiver, args = () => [], check, outputs }) {
  return {
    name: `${cls}.${name}`,
    export: cls,
    receiver: true,
    valid(g, api) {
      const r = receiver(g, api);
      return { args: args(g, r), receiver: r };
    },
    call(api, callArgs, self) {
      const descriptor = Object.getOwnPropertyDescriptor(api[cls].prototype, name);
      return descriptor.get ? descriptor.get.call(self) : descriptor.value.apply(self, callArgs);
    },
    check,
    outputs,
  };
}

const anyTensor = (g) => g.tensor(g.shape(), g.rng.pick(DTYPES));
const is = (type, what) => (v) => {
  if (!(v instanceof type)) throw new Error(`not ${what}`);
};
const isA = (type) => (v) => {
  if (typeof v !== type) throw new Error(`not a ${type}`);
};

// The contexts of the ops (ScanContext, SsdContext, ConvContext): their members, called on the
// context of a small forward that `receiver(g, api)` runs, and their constructor, which only the
// forward may call.
const contextMembers = (cls, names, receiver) =>
  names.map((name) => member(cls, name, { receiver, check() {}, outputs: (v, _args, self) => [v, self?.isDisposed] }));
const contextConstructor = (cls) => ({
  name: cls,
  export: cls,
  valid: () => ({ args: [], fails: TypeError }),
  call: (api, args) => new api[cls](...args),
  check() {},
  outputs: () => [],
});

/** What two equivalent calls of a backward must agree on: every gradient's name and bits. */
const gradientBits = (grads) =>
  Object.keys(grads)
    .sort()
    .flatMap((k) => [k, ...bitsOf([grads[k]])]);

const methods = [
  member('Tensor', 'dataSync', {
    receiver: anyTensor,
    check: is(Float32Array, 'a Float32Array'),
    outputs: (v) => [Array.from(v)],
  }),
  member('Tensor', 'data', {
    receiver: anyTensor,
    check: is(Float32Array, 'a Float32Array'),
    outputs: (v) => [Array.from(v)],
  }),
  member('Tensor', 'bits', {
    receiver: (g) => g.tensor(g.shape(), g.rng.pick(['float16', 'bfloat16'])),
    check: is(Uint16Array, 'a Uint16Array'),
    outputs: (v) => [Array.from(v)],
  }),
  {
    ...member('Tensor', 'to', {
      receiver: anyTensor,
      args: (g) => [g.rng.pick([g.device, { dtype: g.rng.pick(DTYPES) }, { device: g.device }, {}])],
      check(copy, [target]) {
        const plain =
          typeof target === 'object' && !types.isProxy(target) && Object.getPrototypeOf(target) === Object.prototype;
        if (plain && Object.hasOwn(target, 'dtype') && copy.dtype !== target.dtype) throw new Error('dtype');
      },
      outputs: (t) => [t.shape, t.dtype, t.device, ...bitsOf([t])],
    }),
    options: 0,
    optionKeys: ['device', 'dtype'],
  },
  member('Tensor', 'dispose', { receiver: anyTensor, check() {}, outputs: (v, _args, self) => [v, self?.isDisposed] }),
  member('Tensor', 'toString', {
    receiver: anyTensor,
    check(text) {
      if (!/^Tensor\(\[/.test(text)) throw new Error(`toString gave ${text}`);
    },
    outputs: (text) => [text],
  }),
  member('Tensor', 'isDisposed', { receiver: anyTensor, check: isA('boolean'), outputs: (v) => [v] }),
  {
    ...member('Tensor', 'devicePointer', { receiver: anyTensor, check: isA('bigint'), outputs: () => [] }),
    valid(g) {
      const t = g.tensor(g.shape());
      return { args: [], receiver: t, fails: t.device === 'cpu' ? TypeError : undefined };
    },
  },
  // A ScanContext of a small forward.
  ...contextMembers(
    'ScanContext',
    ['dispose', 'isDisposed', 'checkpointBytes'],
    (g, api) => api.selectiveScan(...scanInputs(g).args.slice(0, 5), { saveForBackward: true }).ctx,
  ),
];

// ---- Ops -------------------------------------------------------------------------------------------

/**
 * A scan's valid inputs: small random sizes, a random dtype and layouts of B and C, some options;
 * packed sequences (1 to 4, empty ones too) for some batch-1 calls unless `packed` is false.
 */
function scanInputs(g, packed = true) {
  const { rng } = g;
  const [batch, dim, L, N] = [rng.between(1, 2), rng.between(1, 6), rng.between(1, 40), rng.between(1, 8)];
  const dtype = rng.pick(DTYPES);
  const projection = () => {
    const groups = [1, 2, 3, 6].filter((G) => dim % G === 0);
    return rng.pick([
      () => g.tensor([dim, N]),
      () => g.tensor([batch, N, L], dtype),
      () => g.tensor([batch, rng.pick(groups), N, L], dtype),
    ])();
  };
  const opts = {};
  if (rng.chance(0.4)) opts.D = g.tensor([dim]);
  if (rng.chance(0.4)) opts.z = g.tensor([batch, dim, L], dtype);
  if (rng.chance(0.4)) opts.deltaBias = g.tensor([dim], 'float32', 0, 0.5); // dt >= 0: the state decays
  if (rng.chance(0.4)) opts.deltaSoftplus = rng.chance(0.5);
  let rows = batch;
  if (packed && batch === 1 && rng.chance(0.3)) {
    const cuts = Array.from({ length: rng.between(0, 3) }, () => rng.between(0, L)).sort((a, b) => a - b);
    opts.cuSeqlens = Int32Array.from([0, ...cuts, L]);
    rows = cuts.length + 1;
  }
  if (rng.chance(0.4)) opts.initialState = g.tensor([rows, dim, N]);
  if (rng.chance(0.4)) opts.returnLastState = rng.chance(0.5);
  const args = [
    g.tensor([batch, dim, L], dtype),
    g.tensor([batch, dim, L], dtype, 0, 0.5),
    g.tensor([dim, N], 'float32', -2, -0.5),
    projection(),
    projection(),
    opts,
  ];
  return { args, sizes: { batch, dim, L, N, rows, dtype } };
}

const ops = [
  {
    name: 'selectiveScan',
    export: 'selectiveScan',
    options: 5,
    optionKeys: [
      'D',
      'z',
      'deltaBias',
      'deltaSoftplus',
      'initialState',
      'returnLastState',
      'cuSeqlens',
      'saveForBackward',
    ],
    valid(g) {
      const { args } = scanInputs(g);
      if (g.rng.chance(0.3)) args[5].saveForBackward = true;
      // No CUDA kernels for packed sequences yet.
      if (g.device !== 'cpu' && args[5].cuSeqlens) return { args, fails: 'ERR_CUDA_UNAVAILABLE' };
      return { args };
    },
    call: (api, args) => api.selectiveScan(...args),
    check(r, [u]) {
      expectShape(r.out, [...u.shape], 'out');
      finite(r.out, 'out');
      if (r.lastState) finite(r.lastState, 'lastState');
    },
    outputs: (r) => bitsOf([r.out, r.lastState, r.ctx?.checkpointBytes]),
  },
  {
    name: 'selectiveScanBackward',
    export: 'selectiveScanBackward',
    options: 2,
    optionKeys: ['dLastState', 'deterministic'],
    valid(g, api) {
      const { args, sizes } = scanInputs(g, g.device === 'cpu');
      const { ctx } = api.selectiveScan(...args.slice(0, 5), { ...args[5], saveForBackward: true });
      const opts = {};
      if (g.rng.chance(0.4)) opts.dLastState = g.tensor([sizes.rows, sizes.dim, sizes.N]);
      if (g.rng.chance(0.4)) opts.deterministic = g.rng.chance(0.5);
      return { args: [ctx, g.tensor([sizes.batch, sizes.dim, sizes.L], sizes.dtype), opts], inputs: args };
    },
    call: (api, args) => api.selectiveScanBackward(...args),
    check(grads, [, dout]) {
      expectShape(grads.du, [...dout.shape], 'du');
      for (const [k, t] of Object.entries(grads)) finite(t, k);
    },
    outputs: gradientBits,
  },
  {
    name: 'selectiveStateUpdate',
    export: 'selectiveStateUpdate',
    options: 6,
    optionKeys: ['D', 'z', 'dtBias', 'dtSoftplus', 'stateBatchIndices'],
    inPlace: 0,
    valid(g) {
      const { rng } = g;
      const batch = rng.between(1, 3);
      const N = rng.between(1, 8);
      const dtype = rng.pick(DTYPES);
      const heads = rng.chance(0.5);
      const H = rng.between(1, 4);
      const P = heads ? rng.between(1, 3) : 1;
      const rows = heads ? [H, P] : [H];
      const scalarPerHead = heads && rng.chance(0.5);
      const slots = rng.chance(0.3) ? batch + rng.between(0, 2) : batch;
      const G = rng.pick([1, 2, 4].filter((n) => H % n === 0));
      const grouped = heads || rng.chance(0.5);
      const opts = {};
      if (rng.chance(0.4)) opts.D = g.tensor(scalarPerHead || (heads && rng.chance(0.5)) ? [H] : rows);
      if (rng.chance(0.4)) opts.z = g.tensor([batch, ...rows], dtype);
      if (rng.chance(0.4)) opts.dtBias = g.tensor(scalarPerHead ? [H] : rows, 'float32', 0, 0.5);
      if (rng.chance(0.4)) opts.dtSoftplus = rng.chance(0.5);
      if (slots !== batch || rng.chance(0.3)) {
        const order = Array.from({ length: slots }, (_, i) => i).sort(() => rng.next() - 0.5);
        opts.stateBatchIndices = Int32Array.from({ length: batch }, (_, i) => (rng.chance(0.2) ? -1 : order[i]));
      }
      const projection = () => g.tensor(grouped ? [batch, G, N] : [batch, N], dtype);
      return {
        args: [
          g.tensor([slots, ...rows, N]),
          g.tensor([batch, ...rows], dtype),
          g.tensor(scalarPerHead ? [batch, H] : [batch, ...rows], dtype, 0, 0.5),
          g.tensor(scalarPerHead ? [H] : [...rows, N], 'float32', -2, -0.5),
          projection(),
          projection(),
          opts,
        ],
      };
    },
    call: (api, args) => api.selectiveStateUpdate(...args),
    check(y, [state, x]) {
      expectShape(y, [...x.shape], 'y');
      finite(y, 'y');
      finite(state, 'state');
    },
    outputs: (y, [state]) => bitsOf([y, state]),
  },
  {
    name: 'causalConv1dUpdate',
    export: 'causalConv1dUpdate',
    options: 3,
    optionKeys: ['bias', 'activation', 'stateBatchIndices'],
    inPlace: 0,
    valid(g) {
      const { rng } = g;
      const batch = rng.between(1, 3);
      const dim = rng.between(1, 5);
      const W = rng.between(1, 8);
      const dtype = rng.pick(DTYPES);
      const slots = rng.chance(0.3) ? batch + rng.between(0, 2) : batch;
      const opts = {};
      if (rng.chance(0.4)) opts.bias = g.tensor([dim]);
      if (rng.chance(0.4)) opts.activation = 'silu';
      if (slots !== batch || rng.chance(0.3)) {
        const order = Array.from({ length: slots }, (_, i) => i).sort(() => rng.next() - 0.5);
        opts.stateBatchIndices = Int32Array.from({ length: batch }, (_, i) => (rng.chance(0.2) ? -1 : order[i]));
      }
      return { args: [g.tensor([slots, dim, W - 1], dtype), g.tensor([batch, dim], dtype), g.tensor([dim, W]), opts] };
    },
    call: (api, args) => api.causalConv1dUpdate(...args),
    check(out, [convState, x]) {
      expectShape(out, [...x.shape], 'out');
      finite(out, 'out');
      finite(convState, 'convState');
    },
    outputs: (out, [convState]) => bitsOf([out, convState]),
  },
  contextConstructor('ScanContext'),
];

/** An ssdScan's valid inputs: small random sizes, a random dtype, some options. */
function ssdInputs(g) {
  const { rng } = g;
  const [batch, L, H, P, N] = [
    rng.between(1, 2),
    rng.between(1, 40),
    rng.between(1, 4),
    rng.between(1, 5),
    rng.between(1, 8),
  ];
  const G = rng.pick([1, 2, 4].filter((n) => H % n === 0));
  const dtype = rng.pick(DTYPES);
  const opts = {};
  if (rng.chance(0.4)) opts.D = g.tensor(rng.chance(0.5) ? [H] : [H, P]);
  if (rng.chance(0.4)) opts.z = g.tensor([batch, L, H, P], dtype);
  if (rng.chance(0.4)) opts.dtBias = g.tensor([H], 'float32', 0, 0.5);
  if (rng.chance(0.4)) opts.dtSoftplus = rng.chance(0.5);
  if (rng.chance(0.3)) opts.dtLimit = [0, rng.pick([1, 5, Number.POSITIVE_INFINITY])];
  let rows = batch;
  if (batch === 1 && rng.chance(0.3)) {
    const cut = rng.between(0, L);
    opts.cuSeqlens = Int32Array.from([0, cut, L]);
    rows = 2;
  }
  if (rng.chance(0.4)) opts.initialState = g.tensor([rows, H, P, N]);
  if (rng.chance(0.4)) opts.returnLastState = rng.chance(0.5);
  const args = [
    g.tensor([batch, L, H, P], dtype),
    g.tensor([batch, L, H], dtype, 0, 0.5),
    g.tensor([H], 'float32', -2, -0.5),
    g.tensor([batch, L, G, N], dtype),
    g.tensor([batch, L, G, N], dtype),
    opts,
  ];
  return { args, sizes: { batch, L, H, P, N, rows, dtype } };
}

ops.push(
  {
    name: 'ssdScan',
    export: 'ssdScan',
    options: 5,
    optionKeys: [
      'D',
      'z',
      'dtBias',
      'dtSoftplus',
      'dtLimit',
      'initialState',
      'returnLastState',
      'cuSeqlens',
      'saveForBackward',
    ],
    valid(g) {
      const { args } = ssdInputs(g);
      if (g.device !== 'cpu') return { args, fails: 'ERR_CUDA_UNAVAILABLE' };
      if (g.rng.chance(0.3)) args[5].saveForBackward = true;
      return { args };
    },
    call: (api, args) => api.ssdScan(...args),
    check(r, [x]) {
      expectShape(r.out, [...x.shape], 'out');
      finite(r.out, 'out');
      if (r.lastState) finite(r.lastState, 'lastState');
    },
    outputs: (r) => bitsOf([r.out, r.lastState, r.ctx?.checkpointBytes]),
  },
  {
    name: 'ssdScanBackward',
    export: 'ssdScanBackward',
    options: 2,
    optionKeys: ['dLastState', 'deterministic'],
    valid(g, api) {
      if (g.device !== 'cpu') return { args: [undefined, undefined], fails: TypeError };
      const { args, sizes } = ssdInputs(g);
      const { ctx } = api.ssdScan(...args.slice(0, 5), { ...args[5], saveForBackward: true });
      const opts = {};
      if (g.rng.chance(0.4)) opts.dLastState = g.tensor([sizes.rows, sizes.H, sizes.P, sizes.N]);
      if (g.rng.chance(0.4)) opts.deterministic = g.rng.chance(0.5);
      return { args: [ctx, g.tensor([sizes.batch, sizes.L, sizes.H, sizes.P], sizes.dtype), opts], inputs: args };
    },
    call: (api, args) => api.ssdScanBackward(...args),
    check(grads, [, dout]) {
      expectShape(grads.dx, [...dout.shape], 'dx');
      for (const [k, t] of Object.entries(grads)) finite(t, k);
    },
    outputs: gradientBits,
  },
  // An SsdContext of a small forward (CPU only: no CUDA backend yet).
  ...contextMembers('SsdContext', ['dispose', 'isDisposed', 'checkpointBytes'], (g, api) => {
    const { args } = ssdInputs(g.device === 'cpu' ? g : Object.assign(Object.create(g), { device: 'cpu' }));
    return api.ssdScan(...args.slice(0, 5), { saveForBackward: true }).ctx;
  }),
  contextConstructor('SsdContext'),
);

/** A causalConv1d's valid inputs: small random sizes, a random dtype, some options. */
function convInputs(g) {
  const { rng } = g;
  const [batch, dim, L, W] = [rng.between(1, 2), rng.between(1, 5), rng.between(1, 40), rng.between(1, 8)];
  const dtype = rng.pick(DTYPES);
  const opts = {};
  if (rng.chance(0.4)) opts.bias = g.tensor([dim]);
  if (rng.chance(0.4)) opts.activation = 'silu';
  let rows = batch;
  if (batch === 1 && rng.chance(0.3)) {
    const cut = rng.between(0, L);
    opts.cuSeqlens = Int32Array.from([0, cut, L]);
    rows = 2;
  }
  if (rng.chance(0.4)) opts.initialState = g.tensor([rows, dim, W - 1], dtype);
  if (rng.chance(0.4)) opts.returnFinalState = rng.chance(0.5);
  return {
    args: [g.tensor([batch, dim, L], dtype), g.tensor([dim, W]), opts],
    sizes: { batch, dim, L, W, rows, dtype },
  };
}

ops.push(
  {
    name: 'causalConv1d',
    export: 'causalConv1d',
    options: 2,
    optionKeys: ['bias', 'activation', 'initialState', 'returnFinalState', 'cuSeqlens', 'saveForBackward'],
    valid(g) {
      const { args } = convInputs(g);
      if (g.device !== 'cpu') return { args, fails: 'ERR_CUDA_UNAVAILABLE' };
      if (g.rng.chance(0.3)) args[2].saveForBackward = true;
      return { args };
    },
    call: (api, args) => api.causalConv1d(...args),
    check(r, [x]) {
      expectShape(r.out, [...x.shape], 'out');
      finite(r.out, 'out');
      if (r.finalState) finite(r.finalState, 'finalState');
    },
    outputs: (r) => bitsOf([r.out, r.finalState, r.ctx?.isDisposed]),
  },
  {
    name: 'causalConv1dBackward',
    export: 'causalConv1dBackward',
    options: 2,
    optionKeys: ['dFinalState', 'deterministic'],
    valid(g, api) {
      if (g.device !== 'cpu') return { args: [undefined, undefined], fails: TypeError };
      const { args, sizes } = convInputs(g);
      const { ctx } = api.causalConv1d(args[0], args[1], { ...args[2], saveForBackward: true });
      const opts = {};
      if (g.rng.chance(0.4)) opts.dFinalState = g.tensor([sizes.rows, sizes.dim, sizes.W - 1], sizes.dtype);
      if (g.rng.chance(0.4)) opts.deterministic = g.rng.chance(0.5);
      return { args: [ctx, g.tensor([sizes.batch, sizes.dim, sizes.L], sizes.dtype), opts], inputs: args };
    },
    call: (api, args) => api.causalConv1dBackward(...args),
    check(grads, [, dout]) {
      expectShape(grads.dx, [...dout.shape], 'dx');
      for (const [k, t] of Object.entries(grads)) finite(t, k);
    },
    outputs: gradientBits,
  },
  // A ConvContext of a small forward (CPU only: no CUDA backend yet).
  ...contextMembers('ConvContext', ['dispose', 'isDisposed'], (g, api) => {
    const { args } = convInputs(g.device === 'cpu' ? g : Object.assign(Object.create(g), { device: 'cpu' }));
    return api.causalConv1d(args[0], args[1], { saveForBackward: true }).ctx;
  }),
  contextConstructor('ConvContext'),
);

// ---- Backends --------------------------------------------------------------------------------------

const backends = [
  {
    name: 'setNumThreads',
    export: 'setNumThreads',
    valid: (g) => ({ args: [g.rng.between(1, 4)] }),
    call: (api, [n]) => api.setNumThreads(n),
    check(_result, [n], api) {
      if (api.buildInfo().cpuThreads !== n) throw new Error('thread count not set');
    },
    outputs: (result) => [result],
  },
  {
    name: 'setHostCacheLimit',
    export: 'setHostCacheLimit',
    valid: (g) => ({ args: [g.rng.pick([0, 4096, 1 << 20, 256 << 20])] }),
    call: (api, [bytes]) => api.setHostCacheLimit(bytes),
    check(_result, [bytes], api) {
      const info = api.hostMemoryInfo();
      if (info.cacheLimitBytes !== bytes || info.cachedBytes > bytes) throw new Error('host cache limit not set');
    },
    outputs: (result) => [result],
  },
  {
    name: 'emptyHostCache',
    export: 'emptyHostCache',
    valid: () => ({ args: [] }),
    call: (api, args) => api.emptyHostCache(...args),
    // Not "the cache is empty now": a garbage collection between the two calls may release an
    // undisposed tensor into it (test/host-cache.test.ts checks emptiness where nothing is left).
    check(result) {
      if (result !== undefined) throw new Error('emptyHostCache returned a value');
    },
    outputs: (result) => [result],
  },
  {
    name: 'hostMemoryInfo',
    export: 'hostMemoryInfo',
    valid: () => ({ args: [] }),
    call: (api, args) => api.hostMemoryInfo(...args),
    check(info) {
      const values = Object.values(info);
      if (values.length !== 6 || !values.every((v) => Number.isSafeInteger(v) && v >= 0)) {
        throw new Error(`bad hostMemoryInfo ${JSON.stringify(info)}`);
      }
      if (info.cachedBytes > info.cacheLimitBytes) throw new Error('more cached than the limit');
    },
    outputs: (info) => [Object.keys(info)],
  },
  {
    name: 'buildInfo',
    export: 'buildInfo',
    valid: () => ({ args: [] }),
    call: (api, args) => api.buildInfo(...args),
    check(info) {
      if (typeof info.version !== 'string' || !(info.cpuThreads >= 1)) throw new Error('bad buildInfo');
    },
    outputs: (info) => [info.version, info.cuda, info.cpuIsa],
  },
  ...['isAvailable', 'deviceCount', 'unavailableReason'].map((member) => ({
    name: `cuda.${member}`,
    export: 'cuda',
    valid: () => ({ args: [] }),
    call: (api, args) => (typeof api.cuda[member] === 'function' ? api.cuda[member](...args) : api.cuda[member]),
    check() {},
    outputs: (v) => [v],
  })),
  ...['synchronize', 'memoryInfo', 'resetPeakMemory'].map((member) => ({
    name: `cuda.${member}`,
    export: 'cuda',
    valid: (g) =>
      g.device === 'cpu' && member !== 'synchronize'
        ? { args: ['cuda'], fails: 'ERR_CUDA_UNAVAILABLE' }
        : { args: [member === 'synchronize' ? g.device : 'cuda'] },
    call: (api, args) => api.cuda[member](...args),
    check() {},
    outputs: () => [],
  })),
];

export const TARGETS = [...creation, ...methods, ...ops, ...backends];
