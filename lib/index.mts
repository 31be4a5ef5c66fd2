// The ES module entry: the CommonJS implementation re-exported, so that `import` and `require`
// share one module instance (one Tensor class, one addon).
export * from './index.js';
