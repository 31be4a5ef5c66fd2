import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The compiled package is CommonJS with a native addon: load it with Node itself, and tfjs too,
    // so that the tests and the package share tfjs's CommonJS build.
    server: { deps: { external: [/\/dist\//, /selective-scan/, /@tensorflow\//] } },
    // Every allocation an op does not fully overwrite would show up as NaN (see csrc/storage.cc).
    env: { SELECTIVE_SCAN_POISON_ALLOCATIONS: '1' },
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
