"""Training-step memory of one provider, measured in a fresh subprocess
(``python -m benchmarks._memory MODEL PROVIDER DTYPE``; ``training_memory`` runs it with the allocator pinned).

Two numbers, both for the model-level training step:

* ``saved_mib``: bytes of the tensors autograd keeps for backward after one forward + loss, collected
  with ``torch.autograd.graph.saved_tensors_hooks``; each storage counted once, parameters and the
  input batch left out (they exist anyway). Exact and noise-free: this is activation memory.
* ``step_peak_mib``: how far the resident set (RSS) rises above its level before the step, at its
  peak, over 2 training steps that follow one warm-up step (which maps the library code, creates
  the thread pools and AdamW's state). It includes what saved_mib does not see: backward
  temporaries, gradients, allocator overhead. The peak is the kernel's RSS high-water mark
  (VmHWM in /proc/self/status), reset to the current RSS via /proc/self/clear_refs right before
  the steps. (Not ``ru_maxrss``: after exec it is floored by the *parent's* RSS, i.e. pytest's.)
  glibc's default *dynamic* mmap threshold makes such peaks vary by +-30% from run to run (freed
  tensors stay in the heap, fragmented), so the subprocess pins it (MALLOC_MMAP_THRESHOLD_=64 KiB):
  every tensor buffer is then its own mapping, returned when freed, and the RSS tracks live memory
  (reproducible to ~1 MiB).

A subprocess, because the high-water mark is per process and the allocator setting must be in place
from the start; in the benchmark process both would reflect whatever ran before.
"""
from __future__ import annotations

import functools
import gc
import json
import os
import subprocess
import sys

import torch

from mixerkern.models import create_model

from ._common import ALL_CORES, BATCH, make_batch, precision, train_step

MIB = 2**20


def saved_tensor_bytes(model, images, labels, dtype: str) -> int:
    kept_anyway = {t.untyped_storage().data_ptr() for t in (*model.parameters(), images)}
    saved: dict[int, int] = {}  # storage address -> bytes; saved tensors stay alive: addresses unique

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in kept_anyway:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), precision(dtype):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
    del loss  # frees the graph without running backward
    return sum(saved.values())


def _status_bytes(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS: resident now, VmHWM: its peak), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise KeyError(field)


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # "5": reset the peak RSS to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def measure(model_name: str, provider: str, dtype: str, steps: int = 2) -> dict:
    torch.set_num_threads(ALL_CORES)
    torch.manual_seed(0)
    model = create_model(model_name, fused=provider == "fused")
    images, labels = make_batch(model, BATCH)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_step(model, model, optimizer, images, labels, dtype)  # warm-up (see the docstring)
    gc.collect()
    was_reset = _reset_peak_rss()
    before = _status_bytes("VmRSS")
    for _ in range(steps):
        train_step(model, model, optimizer, images, labels, dtype)
    peak = _status_bytes("VmHWM")
    threshold = os.environ.get("MALLOC_MMAP_THRESHOLD_", "glibc default")
    saved = saved_tensor_bytes(model, images, labels, dtype)  # after the peak is read: its own forward
    return dict(saved_mib=saved / MIB, step_peak_mib=(peak - before) / MIB,
                memory_method=f"saved_tensors_hooks; VmHWM - VmRSS over {steps} steps after 1 warm-up, "
                              f"MALLOC_MMAP_THRESHOLD_={threshold}"
                              f"{'' if was_reset else ' (peak NOT reset: upper bound)'}")


@functools.cache
def training_memory(model_name: str, provider: str, dtype: str) -> dict:
    """Runs ``measure`` in a fresh interpreter (same environment) and returns its result."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(64 * 1024))
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "-W", "ignore", "-m", f"{__package__}._memory", model_name, provider, dtype]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=package_parent)
    if done.returncode != 0:
        raise RuntimeError(f"memory subprocess ({model_name}, {provider}, {dtype}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])

if __name__ == "__main__":
    print(json.dumps(measure(*sys.argv[1:4])))
