"""Interleaved eager-vs-fused timing of FNet's feed-forward sub-layer and of the whole fnet-cifar100 model.

Run as ``python benchmarks/ab_fnet.py [threads]``: the variants alternate call by call, so a busy
machine slows them alike and the ratios stay meaningful (see RESULTS.md). The sub-layer is
``LN2(y + Drop(fc2(GELU(fc1(y)))))``, timed three ways: torch's Linear/GELU/Dropout/add/LayerNorm
(eager); the fused ``channel_mlp`` then torch's add and LayerNorm (mlp+add+LN, FusedFNetLayer's
choice in training until the ops saved fc1's output); the fused ``channel_mixing_postnorm`` (postnorm,
its choice now, with and without autograd).
"""
import sys
import time

import torch
import torch.nn.functional as F

from mixerkern.functional import channel_mixing_postnorm, channel_mlp
from mixerkern.models import create_model

ROUNDS = 8


def best_ms(fns: dict, rounds: int = ROUNDS) -> dict:
    times = {k: [] for k in fns}
    for _ in range(rounds + 1):  # the first round warms up
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: min(v[1:]) * 1e3 for k, v in times.items()}


def report(what: str, ms: dict) -> None:
    """One line: each variant's time and its speedup over eager."""
    print(f"{what:34s} " + "  ".join(f"{k} {t:7.1f} ms" + (f" ({ms['eager'] / t:.2f}x)" if k != "eager" else "")
                                     for k, t in ms.items()))


def main(threads: int) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    batch, tokens, dim, hidden = 128, 64, 256, 256  # fnet-cifar100
    y = torch.randn(batch, tokens, dim, requires_grad=True)
    w1, b1 = (torch.randn(hidden, dim) / 16).requires_grad_(), torch.zeros(hidden, requires_grad=True)
    w2, b2 = (torch.randn(dim, hidden) / 16).requires_grad_(), torch.zeros(dim, requires_grad=True)
    lw, lb = torch.ones(dim, requires_grad=True), torch.zeros(dim, requires_grad=True)
    grad = torch.randn(batch, tokens, dim)

    def eager(p):
        h = F.dropout(F.linear(F.gelu(F.linear(y, w1, b1)), w2, b2), p, p > 0)
        return F.layer_norm(y + h, (dim,), lw, lb, 1e-6)

    def mlp_add_ln(p):
        return F.layer_norm(y + channel_mlp(y, w1, b1, w2, b2, dropout_p=p), (dim,), lw, lb, 1e-6)

    def postnorm(p):
        return channel_mixing_postnorm(y, lw, lb, w1, b1, w2, b2, eps=1e-6, dropout_p=p)

    variants = {"eager": eager, "mlp+add+LN": mlp_add_ln, "postnorm": postnorm}
    with torch.no_grad():
        report("FFN + add + LN, forward", best_ms({k: (lambda f=f: f(0.0)) for k, f in variants.items()}))
    report("FFN + add + LN, fwd+bwd, p=0.2", best_ms({k: (lambda f=f: f(0.2).backward(grad))
                                                      for k, f in variants.items()}))

    models = {"eager": create_model("fnet-cifar100", fused=False), "fused": create_model("fnet-cifar100")}
    models["fused"].load_state_dict(models["eager"].state_dict())
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in models.items()}
    images, labels = torch.randn(batch, 3, 64, 64), torch.randint(0, 100, (batch,))

    def infer(k):
        models[k].eval()
        with torch.no_grad():
            models[k](images)

    def train(k):
        models[k].train()
        optimizers[k].zero_grad()
        F.cross_entropy(models[k](images), labels).backward()
        optimizers[k].step()

    report(f"model inference, {threads} thread(s)", best_ms({k: (lambda k=k: infer(k)) for k in models}, 5))
    report(f"model training step, {threads} thread(s)", best_ms({k: (lambda k=k: train(k)) for k in models}, 5))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
