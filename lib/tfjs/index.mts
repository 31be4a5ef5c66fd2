// The ES module entry of selective-scan/tfjs: the CommonJS implementation re-exported, so that
// `import` and `require` share one module instance (one registration of the kernels).
export * from './index.js';
