// The one place the tests import the package from. Every test calls only this public API.
export * from '../../dist/index.js';
