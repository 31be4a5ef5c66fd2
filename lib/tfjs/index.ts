// selective-scan/tfjs: the ops (selectiveScan, ssdScan) on TensorFlow.js tensors, differentiable
// through tfjs's autograd (tf.grad, tf.grads, tf.variableGrads, the optimizers) on the tfjs 'cpu'
// and 'wasm' backends.
// Needs @tensorflow/tfjs-core (an optional peer dependency of the package).
export { selectiveScan } from './selective-scan.js';
export type { ScanOptions, ScanResult } from './selective-scan.js';
export { ssdScan } from './ssd-scan.js';
export type { SsdOptions, SsdResult } from './ssd-scan.js';
export { SUPPORTED_BACKENDS } from './kernel.js';
