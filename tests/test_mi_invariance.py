"""The ground-truth distributions' closed forms, the copula transform's invariance, the Gaussian (CCA) estimate,
`method="auto"`, the fold critics trained together, and the MI CLI's progress."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal, multivariate_t

from dim_lightning.errors import DIMError
from dim_lightning.mi import auto as auto_module
from dim_lightning.mi import auto_mi, copula, gaussian, mutual_information
from dim_lightning.mi.__main__ import main as mi_cli
from dim_lightning.mi.bounds import make_bound
from dim_lightning.mi.folds import FoldCritics
from dim_lightning.mi.ground_truth import TRANSFORMS, Task, benchmark_tasks, spiral
from dim_lightning.mi.neural import SeparableCritic, _bound

TASKS = {task.name: task for task in benchmark_tasks()}


def sampled_mi(task: Task, n: int, seed: int) -> tuple[float, float]:
    """The mean of log p(x, y) / (p(x) p(y)) over n draws of the untransformed pair, and its standard error."""
    rng = np.random.default_rng(seed)
    plain = Task(task.name, task.family, task.dx, task.dy, task.mi, task.cov, task.dof)
    x, y = plain.sample(n, rng)
    dx, cov = task.dx, task.cov

    def logpdf(values: np.ndarray, scale: np.ndarray) -> np.ndarray:
        zero = np.zeros(len(scale))
        if task.dof is None:
            return multivariate_normal(zero, scale).logpdf(values)
        return multivariate_t(zero, scale, df=task.dof).logpdf(values)

    ratio = logpdf(np.hstack([x, y]), cov) - logpdf(x, cov[:dx, :dx]) - logpdf(y, cov[dx:, dx:])
    return float(ratio.mean()), float(ratio.std() / math.sqrt(n))


def test_the_benchmark_has_40_tasks_over_the_promised_families() -> None:
    tasks = benchmark_tasks()
    assert len(tasks) == 40 and len(TASKS) == 40
    assert {t.family for t in tasks} == {"gaussian", "student-t", *TRANSFORMS}
    assert {t.dof for t in tasks} == {None, 1, 2, 3}
    assert min(t.dx for t in tasks) == 1 and max(t.dx for t in tasks) == 50


@pytest.mark.parametrize(
    "name",
    ["dense 3+3", "sparse 10+10", "student-t dof=1 1+1", "student-t dof=2 3+3", "student-t dof=3 10+10",
     "student-t dof=1 uncorrelated 2+2"],
)  # fmt: skip
def test_closed_form_mi_matches_the_sampled_log_density_ratio(name: str) -> None:
    task = TASKS[name]
    estimate, error = sampled_mi(task, 100_000, seed=1)
    assert abs(estimate - task.mi) < 4 * error + 1e-3, f"{name}: sampled {estimate:.4f} +- {error:.4f}, {task.mi:.4f}"


def test_student_t_mi_exceeds_the_gaussian_mi_of_its_scale() -> None:
    # An uncorrelated t still shares one chi-square scale across its coordinates; the extra MI shrinks with dof.
    extras = [TASKS[f"student-t dof={dof} 3+3"].mi for dof in (1, 2, 3)]
    gaussian_of_its_scale = 0.5 * 3 * -math.log(1 - 0.25)  # three pairs of correlation 0.5
    assert extras[0] > extras[1] > extras[2] > gaussian_of_its_scale


def test_every_transform_is_invertible() -> None:
    values = np.random.default_rng(0).standard_normal((1000, 5))
    for name, transform in TRANSFORMS.items():
        mapped = transform(values)
        if name == "spiral":
            assert np.allclose(spiral(mapped, -1 / 5), values)  # the norm is kept, so the same angle undoes it
        else:  # strictly increasing in each coordinate
            order = np.argsort(values, axis=0)
            assert (np.diff(np.take_along_axis(mapped, order, axis=0), axis=0) > 0).all(), name


def test_gaussian_estimate_is_exact_at_high_n_and_unbiased_in_many_dimensions() -> None:
    task = TASKS["dense 5+5"]
    x, y = task.sample(200_000, np.random.default_rng(2))
    assert gaussian(x, y) == pytest.approx(task.mi, abs=0.01)
    # Independent 50+50 d at n = 2,000: the plain log-det estimate reads about dx dy / (2 n) = 0.6 nats.
    x, y = TASKS["independent 50+50"].sample(2000, np.random.default_rng(3))
    assert abs(gaussian(x, y)) < 0.05 < 0.4 < gaussian(x, y, bias_correction=False)


@pytest.mark.parametrize("method", ["gaussian", "ksg", "histogram"])
def test_copula_estimates_do_not_change_under_monotone_maps_of_a_marginal(method: str) -> None:
    x, y = TASKS["student-t dof=2 3+3"].sample(2000, np.random.default_rng(4))
    mapped = x.copy()
    mapped[:, 0] = np.exp(x[:, 0])  # increasing
    mapped[:, 1] = -(x[:, 1] ** 3)  # decreasing
    before = mutual_information(x, y, method=method, transform="copula")
    after = mutual_information(mapped, np.arcsinh(y), method=method, transform="copula")
    assert after == pytest.approx(before, abs=1e-9)
    assert mutual_information(mapped, y, method="gaussian") < mutual_information(x, y, method="gaussian") - 0.05


def test_copula_gives_normal_scores_and_keeps_ties() -> None:
    scores = copula(np.array([[3.0], [1.0], [2.0], [2.0]]))
    assert scores[1, 0] < scores[2, 0] == scores[3, 0] < scores[0, 0]
    assert scores[2, 0] == pytest.approx(0.0)


def test_auto_reports_its_choice_and_an_interval_around_the_estimate() -> None:
    x, y = TASKS["student-t dof=1 1+1"].sample(3000, np.random.default_rng(5))
    found = auto_mi(x, y, bootstrap=20)
    assert found.chosen == "ksg" and set(found.estimates) == {"gaussian", "ksg"}
    assert found.mi_nats == max(found.estimates.values()) == mutual_information(x, y)
    low, high = found.ci95_nats
    assert low < found.mi_nats < high
    assert abs(found.mi_nats - TASKS["student-t dof=1 1+1"].mi) < 0.05  # the Gaussian estimate reads 0.1 of 0.37
    assert found.estimates["gaussian"] < 0.2


def test_auto_uses_a_neural_critic_in_many_dimensions(monkeypatch) -> None:
    monkeypatch.setattr(auto_module, "NEURAL_STEPS", 20)
    x, y = TASKS["diagonal 5+5"].sample(600, np.random.default_rng(6))
    found = auto_mi(x, y, bootstrap=5)
    assert set(found.estimates) == {"gaussian", "infonce"} and found.chosen == "gaussian"
    assert found.ci95_nats[0] < found.mi_nats < found.ci95_nats[1]


def test_unknown_transform_and_too_few_rows_are_clear_errors() -> None:
    x = np.random.default_rng(7).standard_normal((10, 6))
    with pytest.raises(DIMError, match="unknown transform 'rank'"):
        mutual_information(x, x, method="ksg", transform="rank")
    with pytest.raises(DIMError, match="more rows than dimensions"):
        gaussian(x, x)
    with pytest.raises(DIMError, match="linearly dependent"):
        gaussian(np.hstack([x[:, :1], x[:, :1]]), x[:, 1:2])


def test_fold_critics_compute_what_separate_critics_would() -> None:
    torch.manual_seed(0)
    folds, x, y = 3, torch.randn(3, 40, 4), torch.randn(3, 40, 2)
    batched = FoldCritics(folds, 4, 2, hidden=8, embed=5)
    for p in batched.parameters():
        torch.nn.init.normal_(p, std=0.3)  # f starts at zero; any weights will do here
    estimators = [make_bound("infonce")] * folds
    together = batched.bounds(estimators, x, y)
    for k in range(folds):
        alone = SeparableCritic(4, 2, hidden=8, embed=5)
        with torch.no_grad():
            for (name, mine), (_, stacked) in zip(alone.named_parameters(), batched.named_parameters(), strict=True):
                mine.copy_(stacked[k].T if "weight" in name else stacked[k].reshape(-1))
        assert float(_bound(alone, estimators[k], x[k], y[k]).mi) == pytest.approx(float(together[k].mi), rel=1e-5)


def test_fold_critics_clip_each_folds_gradient_on_its_own() -> None:
    batched = FoldCritics(2, 3, 3, hidden=4, embed=2)
    for p in batched.parameters():
        p.grad = torch.ones_like(p)
        p.grad[1] *= 100  # fold 1's gradient is large, fold 0's small
    norms = [sum(float(p.grad[k].pow(2).sum()) for p in batched.parameters()) ** 0.5 for k in range(2)]
    batched.clip_each_fold(norms[0] * 2)
    after = [sum(float(p.grad[k].pow(2).sum()) for p in batched.parameters()) ** 0.5 for k in range(2)]
    assert after[0] == pytest.approx(norms[0]) and after[1] == pytest.approx(norms[0] * 2)


def test_cli_prints_neural_progress_on_stderr_and_auto_its_choice(tmp_path, capsys) -> None:
    x, y = TASKS["diagonal 2+2"].sample(600, np.random.default_rng(8))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    mi_cli([str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--method", "infonce", "--steps", "30"])
    captured = capsys.readouterr()
    assert "infonce: 5 fold critics: 30/30" in captured.err and json.loads(captured.out)["method"] == "infonce"
    mi_cli([str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--method", "infonce", "--steps", "30", "--no-progress"])
    assert capsys.readouterr().err == ""
    result = mi_cli([str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--bootstrap", "10"])
    assert result["method"] == "auto" and result["chosen"] in result["estimates"] and len(result["ci95_nats"]) == 2


def test_auto_leaves_ksg_out_of_tied_data_with_a_warning_and_takes_ksg_options() -> None:
    from dim_lightning.mi.auto import auto_mi

    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (2000, 1))
    with pytest.warns(UserWarning, match="repeated values"):
        tied = auto_mi(x, x + rng.integers(0, 2, (2000, 1)))
    assert tied.chosen == "gaussian" and set(tied.estimates) == {"gaussian"}
    z = rng.normal(size=(2000, 1))
    assert auto_mi(z, z + rng.normal(size=(2000, 1)), workers=1).chosen in ("gaussian", "ksg")


def test_the_registry_still_imports_from_its_old_module() -> None:
    from dim_lightning.mi import arrays, estimate

    assert arrays.mutual_information is estimate.mutual_information
    assert arrays.ARRAY_METHODS is estimate.ARRAY_METHODS
