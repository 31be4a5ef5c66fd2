// Agreement checks: one backend's outputs against another's (or the plain JS loop's), as relative errors.

/** ‖got − ref‖ / ‖ref‖ (‖got − ref‖ when ref is all zeros). */
export function relErr(got, ref) {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = got[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/**
 * A check record for res.checks: every key's relative error, the first key against tolerance[0] and
 * the others against tolerance[1] (an output, then its gradients).
 */
export function agreementCheck(name, dtype, shape, got, ref, keys, tolerance) {
  const relErrs = {};
  for (const k of keys) relErrs[k] = relErr(got[k], ref[k]);
  const pass = keys.every((k, i) => relErrs[k] <= (i === 0 ? tolerance[0] : tolerance[1]));
  return { name, dtype, shape, relErr: relErrs, tolerance, pass };
}
