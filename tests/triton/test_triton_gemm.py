"""mixerkern.triton.gemm: the batched GEMM with LN prologues and fused epilogues, on odd sizes, in
fp32 (tf32 off) against plain torch math; the dropout hash is checked bit for bit."""
import pytest
import torch
from torch.nn import functional as F

from mixerkern.ops._dropout import dropout_mask
from mixerkern.triton.gemm import gemm, row_stats

B, M, K, N = 3, 37, 50, 45  # none a multiple of the 32-wide blocks


def close(a, b, tol=2e-5):
    return ((a - b).norm() / b.norm()).item() < tol


def test_plain_batched_and_broadcast_weight(device):
    a, b = torch.randn(B, M, K, device=device), torch.randn(B, K, N, device=device)
    out = torch.empty(B, M, N, device=device)
    assert close(gemm(a, b, out, allow_tf32=False), a @ b)
    w = torch.randn(M, K, device=device)
    assert close(gemm(w.expand(B, M, K), b, out, allow_tf32=False), w @ b)
    # a transposed view needs no copy
    assert close(gemm(a, b.transpose(1, 2).contiguous().transpose(1, 2), out, allow_tf32=False), a @ b)


def test_row_stats(device):
    x = 3 + 2 * torch.randn(4, 7, 300, device=device)
    mean, rstd = row_stats(x, 1e-6)
    assert torch.allclose(mean, x.mean(-1), atol=1e-5)
    assert torch.allclose(rstd, 1 / torch.sqrt(x.var(-1, unbiased=False) + 1e-6), rtol=1e-5)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_token_mixing_style_ln_on_b_gelu_and_its_derivative(device, approximate):
    w, bias = torch.randn(M, K, device=device), torch.randn(M, device=device)
    x, lw, lb = torch.randn(B, K, N, device=device), torch.randn(N, device=device), torch.randn(N, device=device)
    out, grad = torch.empty(B, M, N, device=device), torch.empty(B, M, N, device=device)
    gemm(w.expand(B, M, K), x, out, ln=(*row_stats(x, 1e-6), lw, lb), ln_on="b", bias=bias,
         act="gelu" if approximate == "none" else "gelu_tanh", grad=grad, allow_tf32=False)
    pre = (w @ F.layer_norm(x, (N,), lw, lb, 1e-6) + bias[:, None]).requires_grad_()
    ref = F.gelu(pre, approximate=approximate)
    ref.sum().backward()
    assert close(out, ref) and close(grad, pre.grad)


def test_channel_mixing_style_ln_on_a_dropout_gate_residual(device):
    x, lw, lb = torch.randn(B, M, K, device=device), torch.randn(K, device=device), torch.randn(K, device=device)
    w, bias = torch.randn(K, N, device=device), torch.randn(N, device=device)
    gate, res = torch.randn(B, M, N, device=device), torch.randn(B, M, N, device=device)
    seed, p = 0x123456789ABCDEF, 0.3
    out = torch.empty(B, M, N, device=device)
    gemm(x, w.expand(B, K, N), out, ln=(*row_stats(x, 1e-6), lw, lb), ln_on="a", bias=bias, bias_on="col",
         act="gelu", dropout=(seed, p, 0, (M * N, N, 1)), gate=gate, residual=res,
         allow_tf32=False)
    mask = dropout_mask(torch.tensor(seed), (B, M, N), p).to(device)  # the CPU kernels' exact mask
    ref = res + F.gelu(F.layer_norm(x, (K,), lw, lb, 1e-6) @ w + bias) * mask * gate
    assert close(out, ref)
    assert not close(out, res + F.gelu(F.layer_norm(x, (K,), lw, lb, 1e-6) @ w + bias) * gate, 1e-2)  # mask applied


def test_bf16_operands_accumulate_in_fp32(device):
    a, b = torch.randn(B, M, K, device=device).bfloat16(), torch.randn(B, K, N, device=device).bfloat16()
    truth = a.double() @ b.double()
    out = gemm(a, b, torch.empty(B, M, N, device=device))  # fp32 output: only the accumulation's error
    assert close(out.double(), truth, 1e-5)  # a bf16 accumulation would be off by ~1e-2


def test_bf16_output_error_budget(device):
    a, b = torch.randn(B, M, K, device=device).bfloat16(), torch.randn(B, K, N, device=device).bfloat16()
    truth = a.double() @ b.double()
    ours = gemm(a, b, torch.empty(B, M, N, device=device, dtype=torch.bfloat16)).double()
    err = lambda t: ((t - truth).norm() / truth.norm()).item()
    # The interpreter's fp32 -> bf16 conversion truncates where a GPU rounds to nearest: one more
    # half-ulp of error there.
    budget = 2.0 if device == "cuda" else 2.5
    assert err(ours) <= budget * err((a @ b).double())


def test_batch_reduction_and_strided_output(device):
    """dW^T = sum_b LN(x_b) @ dZ_b^T written through a transposed view, as the token-mixing backward does."""
    x, lw, lb = torch.randn(B, M, K, device=device), torch.randn(K, device=device), torch.randn(K, device=device)
    dz = torch.randn(B, N, K, device=device)
    dw = torch.empty(N, M, device=device)
    gemm(x, dz.transpose(1, 2), dw.t().unsqueeze(0), ln=(*row_stats(x, 1e-6), lw, lb), reduce_batch=True,
         allow_tf32=False)
    assert close(dw, torch.einsum("bnk,bmk->nm", dz, F.layer_norm(x, (K,), lw, lb, 1e-6)))
