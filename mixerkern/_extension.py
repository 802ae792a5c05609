"""Builds and loads the C++ kernels (csrc/) with torch's JIT extension loader.

The build is cached per torch/python version under ~/.cache/mixerkern (override with
MIXERKERN_BUILD_DIR; MIXERKERN_BUILD_VERBOSE=1 shows the compiler); ninja rebuilds only what changed. ``python -m mixerkern.build`` runs it ahead
of time. Only CPU sources are compiled here; GPU kernels are Triton (mixerkern/triton/).
"""
from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

import torch

NAME = "mixerkern_cpu"


def source_dir() -> Path:
    checkout = Path(__file__).resolve().parent.parent / "csrc"  # editable install / source tree
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "_csrc"


def sources() -> list[Path]:
    found = sorted((source_dir() / "cpu").glob("*.cpp"))
    if not found:
        raise FileNotFoundError(f"mixerkern: no C++ sources under {source_dir() / 'cpu'}")
    return found


def build_dir() -> Path:
    default = Path.home() / ".cache" / "mixerkern"
    root = Path(os.environ.get("MIXERKERN_BUILD_DIR", default))
    tag = f"torch{torch.__version__.replace('+', '_')}-py{sys.version_info[0]}{sys.version_info[1]}"
    return root / tag


def _is_stale(directory: Path) -> bool:
    lib = directory / f"{NAME}.so"
    if not lib.exists():
        return True
    # Only what the library is built from: csrc/tests (the ctest binaries) is not part of it.
    newest = max(p.stat().st_mtime for p in (source_dir() / "cpu").rglob("*") if p.suffix in (".h", ".cpp"))
    return lib.stat().st_mtime < newest


def load() -> str:
    """Compiles (if needed) and loads the CPU kernel library; returns its path."""
    directory = build_dir()
    directory.mkdir(parents=True, exist_ok=True)
    # torch's own build lock is a plain file that a killed build leaves behind, after which every
    # later load waits forever. Serialize builds with an flock instead (the OS drops it when its
    # holder dies); whoever holds it knows any torch lock file present is stale.
    with open(directory / "mixerkern.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        (directory / "lock").unlink(missing_ok=True)
        if _is_stale(directory):
            print(f"mixerkern: compiling the C++ CPU kernels into {directory} (first use only, a few "
                  "minutes)...", file=sys.stderr, flush=True)
        _build_and_load(directory)
    return str(directory / f"{NAME}.so")


def _build_and_load(directory: Path) -> None:
    from torch.utils import cpp_extension

    cpp_extension.load(
        name=NAME,
        sources=[str(s) for s in sources()],
        # No -march: each ISA's kernels are compiled for it with `#pragma GCC target` and chosen at
        # run time, so the library runs on any x86-64 CPU.
        extra_cflags=["-O3", "-fopenmp", "-fno-math-errno"],
        extra_ldflags=["-fopenmp"],
        extra_include_paths=[str(source_dir())],
        build_directory=str(directory),
        is_python_module=False,
        verbose=os.environ.get("MIXERKERN_BUILD_VERBOSE") == "1",
    )
