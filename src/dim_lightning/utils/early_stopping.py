"""Early stopping on a validation number, keeping the best state: one rule for every small model the package
fits on its own (the neural-MI critic, the MLP probe), so they cannot drift apart."""

from __future__ import annotations

import copy
import math

from torch import nn


class BestState:
    """The state of `model` with the highest validation value seen so far. `check(value)` records a value
    (a check with a gain keeps a copy of the state) and returns True once `patience` checks in a row brought
    no gain: time to stop. `restore()` loads the best state back into `model`."""

    def __init__(self, model: nn.Module, patience: int) -> None:
        self.model = model
        self.patience = patience
        self.best_value = -math.inf
        self.best_state: dict | None = None
        self.checks_without_gain = 0

    def check(self, value: float) -> bool:
        if value > self.best_value:
            self.best_value, self.checks_without_gain = value, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
            return False
        self.checks_without_gain += 1
        return self.checks_without_gain >= self.patience

    def restore(self) -> None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
