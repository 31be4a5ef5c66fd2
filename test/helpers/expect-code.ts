import { expect } from 'vitest';

/** Runs fn, expects it to throw an Error with the given code; returns the error. */
export function expectCode(fn: () => unknown, code: string, message?: RegExp): Error & { code?: string } {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, `expected a throw with code ${code}`).toBeInstanceOf(Error);
  const err = thrown as Error & { code?: string };
  expect(err.code, `code of: ${err.message}`).toBe(code);
  if (message) expect(err.message).toMatch(message);
  return err;
}

/** Runs fn, expects it to throw an instance of cls whose message matches re. */
export function expectThrow(fn: () => unknown, cls: new (...a: never[]) => Error, re?: RegExp): Error {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, `expected a throw of ${cls.name}`).toBeInstanceOf(cls);
  const err = thrown as Error;
  if (re) expect(err.message).toMatch(re);
  return err;
}
