"""Mamba-2's chunked scan in plain PyTorch, the reference that users of Mamba-2 without Triton run.

segsum and ssd_minimal_discrete follow mamba_ssm/modules/ssd_minimal.py line for line, with its
einsums (the form with B and C per head, the paper's Listing 1; later mamba_ssm versions index them
by group in the einsums, the same values at G = 1); einops' rearrange and repeat (einops may be
missing) are written as reshape, permute and expand. ssd_reference maps the inputs of selective-scan's ssdScan onto it:

  dt = softplus(dt + dtBias)                      (ssdScan with dtSoftplus and dtBias)
  ssd_minimal_discrete(X * dt, A * dt, B, C, 64)  B, C of G groups expanded to the H heads (head h
                                                  reads group h // (H / G), as ssdScan does); L padded
                                                  with zeros to a multiple of the block (dt 0 there:
                                                  no decay, no input), the padding cut off after
  out = (y + D x) * silu(z)

Imported by torch_cpu_baseline.py (modes ssd, ssd-check) and torch_gpu_reference.py (ssd cases)."""
import torch
import torch.nn.functional as F

BLOCK_LEN = 64


def segsum(x):
    """Stable segment sum: out[..., i, j] = x[..., j+1] + ... + x[..., i] for j <= i, -inf above."""
    T = x.size(-1)
    x = x[..., None].expand(*x.shape, T)  # repeat(x, "... d -> ... d e", e=T)
    mask = torch.tril(torch.ones(T, T, device=x.device, dtype=torch.bool), diagonal=-1)
    x = x.masked_fill(~mask, 0)
    x_segsum = torch.cumsum(x, dim=-2)
    mask = torch.tril(torch.ones(T, T, device=x.device, dtype=torch.bool), diagonal=0)
    x_segsum = x_segsum.masked_fill(~mask, -torch.inf)
    return x_segsum


def ssd_minimal_discrete(X, A, B, C, block_len, initial_states=None):
    """X (batch, length, heads, P), A (batch, length, heads), B and C (batch, length, heads, N);
    length a multiple of block_len. Returns Y (batch, length, heads, P) and the final state."""
    assert X.dtype == A.dtype == B.dtype == C.dtype
    assert X.shape[1] % block_len == 0
    b, length, h, p = X.shape
    c = length // block_len

    # Rearrange into blocks/chunks: "b (c l) ... -> b c l ..."
    X, B, C = (t.reshape(b, c, block_len, *t.shape[2:]) for t in (X, B, C))
    A = A.reshape(b, c, block_len, h).permute(0, 3, 1, 2)  # "b c l h -> b h c l"
    A_cumsum = torch.cumsum(A, dim=-1)

    # 1. The output of each intra-chunk (diagonal) block
    L = torch.exp(segsum(A))
    Y_diag = torch.einsum('bclhn,bcshn,bhcls,bcshp->bclhp', C, B, L, X)

    # 2. The state at the end of each chunk (right term of the off-diagonal blocks' factorization)
    decay_states = torch.exp(A_cumsum[:, :, :, -1:] - A_cumsum)
    states = torch.einsum('bclhn,bhcl,bclhp->bchpn', B, decay_states, X)

    # 3. The inter-chunk recurrence: the states at the chunk boundaries
    if initial_states is None:
        initial_states = torch.zeros_like(states[:, :1])
    states = torch.cat([initial_states, states], dim=1)
    decay_chunk = torch.exp(segsum(F.pad(A_cumsum[:, :, :, -1], (1, 0))))
    new_states = torch.einsum('bhzc,bchpn->bzhpn', decay_chunk, states)
    states, final_state = new_states[:, :-1], new_states[:, -1]

    # 4. State -> output per chunk (left term of the off-diagonal blocks' factorization)
    state_decay_out = torch.exp(A_cumsum)
    Y_off = torch.einsum('bclhn,bchpn,bhcl->bclhp', C, states, state_decay_out)

    Y = (Y_diag + Y_off).reshape(b, length, h, p)  # "b c l h p -> b (c l) h p"
    return Y, final_state


def ssd_reference(x, dt, A, B, C, D, z, dt_bias, block_len=BLOCK_LEN):
    """ssdScan(x, dt, A, B, C, {D, z, dtBias, dtSoftplus: true}) through ssd_minimal_discrete.
    x, z (batch, L, H, P), dt (batch, L, H), B, C (batch, L, G, N) in the input dtype; A, D, dt_bias (H)
    float32. The scalars (softplus, dt * A) are float32, the chunked products in x's dtype (as
    ssd_minimal_discrete asserts: one dtype), the output in x's dtype."""
    b, length, H, P = x.shape
    G = B.shape[2]
    dtype = x.dtype
    dt = F.softplus(dt.float() + dt_bias)
    X = (x * dt[..., None]).to(dtype)
    Adt = (A * dt).to(dtype)
    Bh = B.repeat_interleave(H // G, dim=2)
    Ch = C.repeat_interleave(H // G, dim=2)
    pad = -length % block_len
    if pad:
        X = F.pad(X, (0, 0, 0, 0, 0, pad))
        Adt = F.pad(Adt, (0, 0, 0, pad))
        Bh = F.pad(Bh, (0, 0, 0, 0, 0, pad))
        Ch = F.pad(Ch, (0, 0, 0, 0, 0, pad))
    y, _ = ssd_minimal_discrete(X, Adt, Bh, Ch, block_len)
    y = y[:, :length] + D[:, None] * x
    return (y * F.silu(z)).to(dtype)


def ssd_inputs(b, length, H, P, G, N, dtype=torch.float32, device='cpu'):
    """The benchmark's distributions (bench/ops/ssd-scan.mjs), drawn on the device from torch's
    global seed: x, z, B, C, D randn; dt uniform in [-2, 0); A = -exp(uniform[0, 1)); dtBias =
    -uniform[0, 1); x, z, dt, B, C in dtype, A, D, dtBias float32. Returns (inputs, dout)."""

    def randn(*s):
        return torch.randn(*s, device=device, dtype=torch.float32).to(dtype)

    inputs = {
        'x': randn(b, length, H, P),
        'dt': (torch.rand(b, length, H, device=device) * 2 - 2).to(dtype),
        'A': -torch.exp(torch.rand(H, device=device)),
        'B': randn(b, length, G, N),
        'C': randn(b, length, G, N),
        'D': torch.randn(H, device=device),
        'z': randn(b, length, H, P),
        'dt_bias': -torch.rand(H, device=device),
    }
    return inputs, randn(b, length, H, P)
