"""Interleaved eager-vs-fused timing of the bare MLPs (token_mlp, channel_mlp) at patchless-cifar10 shapes.

Run as ``python benchmarks/ab_bare_mlps.py``: both providers alternate call by call, so a busy
machine slows both alike and the ratio stays meaningful (see RESULTS.md).
"""
import time, torch, mixerkern
from mixerkern.reference import functional as ref
from mixerkern import functional as fz
torch.set_num_threads(1)
B=128
for op, shape, n in (("channel_mlp", (B,32,96), 96), ("token_mlp", (B,32,96), 32)):
    x=torch.randn(*shape, requires_grad=True)
    ps=[(torch.randn(n,n)/n**.5).requires_grad_(), torch.randn(n).requires_grad_(), (torch.randn(n,n)/n**.5).requires_grad_(), torch.randn(n).requires_grad_()]
    g=torch.randn(*shape)
    fns={"eager": getattr(ref, op), "fused": getattr(fz, op)}
    t={k: [] for k in fns}
    for mode in ("fwd","fwd+bwd"):
        t={k: [] for k in fns}
        for r in range(15):
            for k,f in fns.items():
                t0=time.perf_counter()
                out=f(x,*ps)
                if mode!="fwd": torch.autograd.grad(out,[x,*ps],g)
                t[k].append(time.perf_counter()-t0)
        med={k: sorted(v)[len(v)//2]*1e3 for k,v in t.items()}
        print(op, mode, {k: f"{v:.2f} ms" for k,v in med.items()}, f"fused speedup {med['eager']/med['fused']:.2f}x")
