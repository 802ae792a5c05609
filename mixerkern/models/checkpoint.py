"""Model checkpoints: safetensors weights whose metadata holds the JSON model config.

A ``.safetensors`` file written by :func:`save` is self-contained: ``load`` rebuilds the model
with ``create_model(**config)`` and loads the weights strictly. Extra JSON-able metadata (the
training run's preprocessing, the epoch, metrics) rides along under its own keys. Writes are
atomic (temporary file, then rename), so a crash never leaves a half-written checkpoint.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

# Tried in this order when ``load`` is given a run directory.
RUN_DIR_CHECKPOINTS = ("best.safetensors", "last.safetensors")


def atomic_replace(path: Path, write) -> None:
    """Calls ``write(tmp_path)`` and renames the result onto ``path`` (same directory, so atomic).
    The data is fsynced before the rename and the directory after it, so that even a power cut
    leaves either the old file or the new one, never an empty one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)


def save(model: torch.nn.Module, path: str | Path, **metadata: Any) -> Path:
    """Writes ``model``'s weights and config (``model.config``) plus ``metadata`` to ``path``."""
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "name" not in config:
        raise TypeError("save: model must come from mixerkern.models.create_model (it needs .config with a name)")
    meta = {"config": json.dumps(config), **{k: json.dumps(v) for k, v in metadata.items()}}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_replace(Path(path), lambda tmp: save_file(state, str(tmp), metadata=meta))
    return Path(path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint written by :func:`save` (``config`` included)."""
    path = resolve(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path}: not a mixerkern checkpoint (no 'config' in its safetensors metadata)")
    return {k: json.loads(v) for k, v in meta.items()}


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or the best (else the last) one inside a training run directory."""
    path = Path(path)
    if path.is_dir():
        for name in RUN_DIR_CHECKPOINTS:
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path}: no checkpoint in this directory (looked for {', '.join(RUN_DIR_CHECKPOINTS)})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    return path


def load(path: str | Path, *, fused: bool = True, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """The model saved at ``path`` (a ``.safetensors`` file or a training run directory), in eval
    mode, with fused (default) or reference blocks; the weights are the same either way."""
    from . import create_model  # deferred: mixerkern.models imports this module

    path = resolve(path)
    config = dict(read_metadata(path)["config"])
    model = create_model(config.pop("name"), fused=fused, **config)
    model.load_state_dict(load_file(str(path), device=str(map_location)), strict=True)
    return model.to(map_location).eval()
