#!/usr/bin/env python3
"""The PyTorch sequential reference on the GPU, timed on the benchmark's own inputs.

  python3 bench/torch_gpu_reference.py MANIFEST.json [--out RESULT.json]

bench/bench.mjs writes the manifest and the inputs (raw files: u, delta, z, dout, B, C as bfloat16
bit patterns, A and D as float32; the float32 runs use the same, bfloat16-exact, values) and reads
the result. The reference is mamba_ssm's selective_scan_ref in form (exp of all dt*A first, then a
loop over L; unbind rather than slicing, so that autograd's backward stays linear in L), computing
in float32 whatever the input dtype: forward under no_grad, and forward + backward with autograd.
Medians over repetitions of CUDA-event times (wall clock when the manifest's device is 'cpu', which
is how the harness is tested without a GPU). Cases that would not fit in free GPU memory are skipped
with a note; an out-of-memory error skips the rest of that case.

A case of kind "ssd" (Mamba-2's scan, bench/ops/ssd-scan.mjs) times two implementations on inputs
drawn here with the benchmark's distributions (seeded; no files, nothing compared): "ssd_minimal",
mamba_ssm's chunked reference in plain PyTorch (ssd_minimal.py beside this script), in the case's
dtype; and "triton", mamba_ssm's Triton kernels (mamba_chunk_scan_combined, chunk_size 256 as
Mamba2 uses, D, z, dt_bias, dt_softplus), when mamba_ssm imports, else skipped with the reason.
Forward under no_grad, forward + backward with autograd; two untimed calls first (Triton compiles
on the first); peak memory from torch.cuda.max_memory_allocated.

Manifest: {"device": "cuda"|"cuda:N"|"cpu", "reps": 3, "budget_s": 20,
           "cases": [{"id", "batch", "dim", "L", "N", "dtype": "float32"|"bfloat16",
                      "files": {"u", "delta", "z", "dout", "B", "C", "A", "D"},
                      "ops": ["fwd", "fwdbwd"], "check_out": PATH or null}
                     | {"kind": "ssd", "id", "batch", "L", "H", "P", "G", "N", "dtype", "seed",
                        "ops": ["fwd", "fwdbwd"], "impls": ["ssd_minimal", "triton"]}]}
Result: {"torch", "cuda", "device_name", "mamba_ssm": version or null, "mamba_ssm_error",
         "cases": [{"id", "fwd_ms", "fwdbwd_ms", "fwd_reps", "fwdbwd_reps", "fwd_peak_bytes",
                    "fwdbwd_peak_bytes", "skipped": {op: reason}}
                   | {"id", "impls": {impl: {"fwd_ms", ..., "skipped": {op: reason}}}, "skipped"}]}"""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts in the repository
from ssd_minimal import ssd_inputs, ssd_reference  # noqa: E402


def load(path, shape, kind, device):
    n = 1
    for s in shape:
        n *= s
    if kind == 'bf16':
        t = torch.from_file(path, size=n, dtype=torch.int16).view(torch.bfloat16)
    else:
        t = torch.from_file(path, size=n, dtype=torch.float32)
    return t.reshape(shape).to(device)


def scan_ref(u, delta, A, B, C, D, z):
    """out = (y + D u) * silu(z), y_t = C_t . h_t, h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, dt = softplus(delta)."""
    dtype_in = u.dtype
    u, z, B, C = u.float(), z.float(), B.float(), C.float()
    dt = F.softplus(delta.float())
    b, d, L = u.shape
    N = A.shape[1]
    dA = torch.exp(dt[..., None] * A[None, :, None, :])                  # (b, d, L, N)
    dBu = dt[..., None] * B.transpose(1, 2)[:, None] * u[..., None]      # (b, d, L, N)
    h = u.new_zeros(b, d, N)
    ys = []
    for a_t, bu_t, c_t in zip(dA.unbind(2), dBu.unbind(2), C.unbind(2)):
        h = a_t * h + bu_t
        ys.append(torch.einsum('bdn,bn->bd', h, c_t))
    y = torch.stack(ys, -1) + D[None, :, None] * u
    return (y * F.silu(z)).to(dtype_in)


class Timer:
    def __init__(self, device):
        self.cuda = device.type == 'cuda'

    def time(self, fn):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3


def median(xs):
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def time_op(timer, device, call, prepare, reps, budget_s, warmups):
    """{'ms', 'reps', 'peak_bytes'} of call(): `warmups` untimed calls, then up to `reps` timed ones
    within budget_s; prepare() (fresh autograd leaves, or None) runs before each call, untimed."""
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    last = 0.0
    for _ in range(warmups):
        if prepare:
            prepare()
        last = timer.time(call)
    n = max(1, min(reps, int(budget_s * 1e3 / max(last, 1e-3))))
    times = []
    for _ in range(n):
        if prepare:
            prepare()
        times.append(timer.time(call))
    r = {'ms': median(times), 'reps': n}
    if device.type == 'cuda':
        r['peak_bytes'] = torch.cuda.max_memory_allocated(device)
    return r


def run_case(case, device, timer, reps, budget_s):
    shape = (case['batch'], case['dim'], case['L'])
    bnl = (case['batch'], case['N'], case['L'])
    f = case['files']
    res = {'id': case['id'], 'skipped': {}}
    dtype = torch.bfloat16 if case['dtype'] == 'bfloat16' else torch.float32
    T = case['batch'] * case['dim'] * case['L'] * case['N'] * 4  # one (b, d, L, N) float32 tensor
    need = {'fwd': 3 * T, 'fwdbwd': 8 * T}
    if device.type == 'cuda':
        free, _ = torch.cuda.mem_get_info(device)
    else:
        free = None
    x = {k: load(f[k], shape, 'bf16', device).to(dtype) for k in ('u', 'delta', 'z', 'dout')}
    x['B'] = load(f['B'], bnl, 'bf16', device).to(dtype)
    x['C'] = load(f['C'], bnl, 'bf16', device).to(dtype)
    x['A'] = load(f['A'], (case['dim'], case['N']), 'f32', device)
    x['D'] = load(f['D'], (case['dim'],), 'f32', device)
    args = lambda d: (d['u'], d['delta'], d['A'], d['B'], d['C'], d['D'], d['z'])

    for op in case.get('ops', ['fwd', 'fwdbwd']):
        if free is not None and need[op] > 0.9 * free:
            res['skipped'][op] = f'needs about {need[op] / 1e9:.1f} GB, {free / 1e9:.1f} GB free'
            continue
        try:
            if op == 'fwd':
                out_keep = {}
                prepare = None

                def fn():
                    with torch.no_grad():
                        out_keep['out'] = scan_ref(*args(x))
            else:
                leaves = {}

                def prepare():
                    leaves.clear()
                    leaves.update({k: v.detach().clone().requires_grad_(k != 'dout') for k, v in x.items()})

                def fn():
                    scan_ref(*args(leaves)).backward(leaves['dout'])

            t = time_op(timer, device, fn, prepare, reps, budget_s, warmups=1)
            res[f'{op}_ms'], res[f'{op}_reps'] = t['ms'], t['reps']
            if 'peak_bytes' in t:
                res[f'{op}_peak_bytes'] = t['peak_bytes']
            if op == 'fwd' and case.get('check_out'):
                out_keep['out'].float().contiguous().cpu().numpy().tofile(case['check_out'])
                res['check_out'] = case['check_out']
            if op == 'fwd':
                out_keep.clear()
            else:
                leaves.clear()
        except torch.cuda.OutOfMemoryError as e:  # noqa: PERF203
            res['skipped'][op] = 'out of memory: ' + str(e).split('\n')[0][:160]
            if device.type == 'cuda':
                torch.cuda.empty_cache()
    return res


DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


def mamba_triton():
    """mamba_ssm's mamba_chunk_scan_combined and its version, or (None, the reason it is missing)."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception as e:  # ImportError, or a broken install: either way no Triton rows
        return None, f'mamba_ssm not importable here ({type(e).__name__}: {str(e)[:160]})'
    import mamba_ssm
    return mamba_chunk_scan_combined, getattr(mamba_ssm, '__version__', 'unknown version')


def run_ssd_case(case, device, timer, reps, budget_s, triton):
    b, L, H, P, G, N = (case[k] for k in ('batch', 'L', 'H', 'P', 'G', 'N'))
    dtype = DTYPES[case['dtype']]
    res = {'id': case['id'], 'impls': {}, 'skipped': {}}
    torch.manual_seed(case.get('seed', 0))
    x, dout = ssd_inputs(b, L, H, P, G, N, dtype, device)
    names = ('x', 'dt', 'A', 'B', 'C', 'D', 'z', 'dt_bias')
    fns = {'ssd_minimal': lambda t: ssd_reference(*(t[k] for k in names))}
    if triton[0] is not None:
        fns['triton'] = lambda t: triton[0](t['x'], t['dt'], t['A'], t['B'], t['C'], chunk_size=256, D=t['D'],
                                            z=t['z'], dt_bias=t['dt_bias'], dt_softplus=True)
    # A rough size of what ssd_minimal holds: B and C expanded to every head, the chunk states and
    # the (L x 64) decay and score blocks per head, a few of each; autograd keeps them all.
    item = torch.finfo(dtype).bits // 8
    per = b * L * H * (3 * P + 2 * N + 2 * 64) * item + b * H * (L // 64 + 1) * P * N * 4
    need = {'fwd': 3 * per, 'fwdbwd': 8 * per}
    free = torch.cuda.mem_get_info(device)[0] if device.type == 'cuda' else None
    for impl in case.get('impls', ['ssd_minimal', 'triton']):
        r = res['impls'][impl] = {'skipped': {}}
        if impl not in fns:
            r['skipped']['all'] = triton[1]
            continue
        fn = fns[impl]
        for op in case.get('ops', ['fwd', 'fwdbwd']):
            if free is not None and impl == 'ssd_minimal' and need[op] > 0.9 * free:
                r['skipped'][op] = f'needs about {need[op] / 1e9:.1f} GB, {free / 1e9:.1f} GB free'
                continue
            leaves = {}
            try:
                if op == 'fwd':
                    prepare = None

                    def call():
                        with torch.no_grad():
                            fn(x)
                else:
                    def prepare():
                        leaves.clear()
                        leaves.update({k: v.detach().clone().requires_grad_(True) for k, v in x.items()})

                    def call():
                        fn(leaves).backward(dout)
                # Two untimed calls: Triton compiles on the first.
                t = time_op(timer, device, call, prepare, reps, budget_s, warmups=2)
                r[f'{op}_ms'], r[f'{op}_reps'] = t['ms'], t['reps']
                if 'peak_bytes' in t:
                    r[f'{op}_peak_bytes'] = t['peak_bytes']
            except torch.cuda.OutOfMemoryError as e:  # noqa: PERF203
                r['skipped'][op] = 'out of memory: ' + str(e).split('\n')[0][:160]
            finally:
                leaves.clear()
                if device.type == 'cuda':
                    torch.cuda.empty_cache()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('manifest')
    ap.add_argument('--out')
    a = ap.parse_args()
    with open(a.manifest) as fh:
        m = json.load(fh)
    device = torch.device(m.get('device', 'cuda'))
    timer = Timer(device)
    result = {
        'torch': torch.__version__,
        'cuda': torch.version.cuda,
        'device_name': torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
        'threads': torch.get_num_threads(),
        'cases': [],
    }
    triton = None
    if any(c.get('kind') == 'ssd' for c in m['cases']):
        triton = mamba_triton() if device.type == 'cuda' else (None, 'Triton needs a GPU')
        result['mamba_ssm'] = triton[1] if triton[0] is not None else None
        result['mamba_ssm_error'] = None if triton[0] is not None else triton[1]
    for case in m['cases']:
        t = time.perf_counter()
        try:
            reps, budget_s = int(m.get('reps', 3)), float(m.get('budget_s', 20))
            if case.get('kind') == 'ssd':
                r = run_ssd_case(case, device, timer, reps, budget_s, triton)
            else:
                r = run_case(case, device, timer, reps, budget_s)
        except Exception as e:  # a broken case must not lose the others' results
            r = {'id': case['id'], 'skipped': {'all': f'{type(e).__name__}: {str(e)[:300]}'}}
        r['wall_s'] = time.perf_counter() - t
        result['cases'].append(r)
        times = {k: v for k, v in r.items() if k.endswith('_ms')}
        times.update({f'{i} {k}': v for i, x in r.get('impls', {}).items() for k, v in x.items() if k.endswith('_ms')})
        print(f"torch reference {case['id']}: " + ', '.join(f"{k} {v:.2f}" for k, v in times.items()) +
            (f" skipped {r['skipped']}" if r['skipped'] else ''), file=sys.stderr, flush=True)
    text = json.dumps(result)
    if a.out:
        with open(a.out, 'w') as fh:
            fh.write(text)
    else:
        print(text)


if __name__ == '__main__':
    main()
