"""The one early-stopping rule shared by the neural-MI critic and the MLP probe."""

from __future__ import annotations

import torch

from dim_lightning.utils.early_stopping import BestState


def test_best_state_stops_after_patience_checks_without_gain_and_restores_the_best() -> None:
    model = torch.nn.Linear(1, 1)
    best = BestState(model, patience=2)
    stops = []
    for check, value in enumerate((0.5, 0.7, 0.6, 0.7, 0.65)):
        with torch.no_grad():
            model.weight.fill_(check)  # the state that scored `value` is marked with its check's number
        stops.append(best.check(value))
    assert stops == [False, False, False, True, True]  # a tie is no gain
    best.restore()
    assert model.weight.item() == 1.0 and best.best_value == 0.7  # the first 0.7, not the tie after it


def test_best_state_without_any_check_leaves_the_model_alone() -> None:
    model = torch.nn.Linear(1, 1)
    before = model.weight.detach().clone()
    BestState(model, patience=1).restore()
    assert torch.equal(model.weight, before)
