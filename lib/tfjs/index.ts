// selective-scan/tfjs: the ops on TensorFlow.js tensors, differentiable through tfjs's autograd
// (tf.grad, tf.grads, tf.variableGrads, the optimizers) on the tfjs 'cpu' and 'wasm' backends.
// Needs @tensorflow/tfjs-core (an optional peer dependency of the package).
export { selectiveScan } from './selective-scan.js';
export type { ScanOptions, ScanResult } from './selective-scan.js';
export { causalConv1d } from './causal-conv1d.js';
export type { CausalConv1dOptions, CausalConv1dResult } from './causal-conv1d.js';
export { SUPPORTED_BACKENDS } from './kernel.js';
