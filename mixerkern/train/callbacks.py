"""Keras-style EarlyStopping on a monitored loss (ReduceLROnPlateau comes from torch)."""
from __future__ import annotations

import copy
import math
from typing import Any

import torch


class EarlyStopping:
    """Stops after ``patience`` epochs without a lower monitored value and keeps the best weights
    (Keras ``EarlyStopping(patience=..., restore_best_weights=True)``, min_delta 0)."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best = math.inf
        self.best_epoch = -1
        self.wait = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def step(self, value: float, epoch: int, model: torch.nn.Module) -> bool:
        """Records epoch ``epoch``'s value; True when training should stop."""
        if value < self.best:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            return False
        self.wait += 1
        return self.wait >= self.patience

    @property
    def improved(self) -> bool:
        return self.wait == 0

    def restore(self, model: torch.nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_state = state["best_state"]
