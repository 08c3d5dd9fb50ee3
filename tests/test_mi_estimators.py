"""MI estimators on data with known MI: Gaussians (closed form), discrete channels (exact pmf), XOR."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from dim_lightning.errors import DIMError
from dim_lightning.mi import (
    BOUNDS,
    entropy_discrete,
    entropy_knn,
    max_mutual_information,
    mutual_information,
    neural_mi_sampled,
)
from dim_lightning.mi.__main__ import main as mi_cli
from dim_lightning.mi.ground_truth import discrete_channel, linear_gaussian, pmf_mi, staircase


def correlated_gaussian(rho: float, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    return x, rho * x + math.sqrt(1 - rho * rho) * rng.standard_normal(n)


def dense_gaussian(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """x in 5-d with correlated coordinates, y = A x + noise with A dense: every pair of coordinates shares
    information. About 1 nat."""
    rng = np.random.default_rng(seed)
    return linear_gaussian(rng.normal(scale=0.4, size=(5, 5)), 0.5 * np.eye(5) + 0.5, n, rng)


CHANNEL = np.array([[0.20, 0.05, 0.00], [0.05, 0.20, 0.05], [0.00, 0.05, 0.20], [0.10, 0.05, 0.05]])


def test_ksg_on_1d_gaussian_within_003_nats() -> None:
    x, y = correlated_gaussian(0.75, 5000)
    assert mutual_information(x, y, method="ksg") == pytest.approx(-0.5 * math.log(1 - 0.75**2), abs=0.03)


@pytest.mark.slow
def test_ksg_on_5d_dense_gaussian_within_10_percent_given_enough_samples() -> None:
    # In 10 joint dimensions KSG is biased low and the bias shrinks slowly (numbers: benchmarks/README.md).
    x, y, truth = dense_gaussian(50_000)
    few = mutual_information(x[:5000], y[:5000], method="ksg", k=1)
    many = mutual_information(x, y, method="ksg", k=1)
    assert few < many < truth
    assert many == pytest.approx(truth, rel=0.10)


def test_plugin_is_exact_on_exact_frequencies_and_converges_on_samples() -> None:
    truth = pmf_mi(CHANNEL)
    counts = np.rint(CHANNEL * 100).astype(int)
    x = np.repeat(np.arange(4), counts.sum(1))
    y = np.concatenate([np.repeat(np.arange(3), row) for row in counts])
    assert mutual_information(x, y, method="plugin") == pytest.approx(truth, abs=1e-12)
    rng = np.random.default_rng(0)
    errors = []
    for n in (300, 3_000, 300_000):
        errors.append(abs(mutual_information(*discrete_channel(CHANNEL, n, rng), method="plugin") - truth))
    assert errors[-1] < 0.005 and errors[-1] < errors[0]


def test_miller_madow_reduces_small_sample_bias() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 8, 300), rng.integers(0, 8, 300)
    plain = mutual_information(x, y, method="plugin")
    corrected = mutual_information(x, y, method="plugin", miller_madow=True)
    assert abs(corrected) < abs(plain)


@pytest.mark.parametrize(
    ("method", "options", "tolerance"),
    [
        ("ksg", {}, 0.02),
        ("plugin", {"miller_madow": True}, 0.02),
        ("histogram", {"miller_madow": True, "bins": 10}, 0.02),
        ("infonce", {"steps": 100, "folds": 2}, 0.05),
        ("nwj", {"steps": 100, "folds": 2}, 0.05),
        ("dv", {"steps": 100, "folds": 2}, 0.05),
        ("smile", {"steps": 100, "folds": 2}, 0.05),
        ("jsd", {"steps": 100, "folds": 2}, 0.05),
    ],
)
def test_independent_data_gives_about_zero(method: str, options: dict, tolerance: float) -> None:
    rng = np.random.default_rng(2)
    if method == "plugin":
        x, y = rng.integers(0, 4, 5000), rng.integers(0, 4, 5000)
    elif method == "histogram":
        x, y = rng.standard_normal(5000), rng.standard_normal(5000)
    else:
        x, y = rng.standard_normal((5000, 2)), rng.standard_normal((5000, 2))
    assert abs(mutual_information(x, y, method=method, **options)) < tolerance


@pytest.mark.slow
def test_neural_infonce_never_above_log_of_evaluated_pairs() -> None:
    # 400 rows in 5 folds of 80, each fold read out in blocks of at most max_eval = 40 rows, every pair of a
    # block scored: each positive has 39 negatives.
    x = np.random.default_rng(3).standard_normal((400, 2))
    estimate = mutual_information(x, x, method="infonce", steps=300, max_eval=40)
    assert estimate <= math.log(40) + 1e-6
    assert estimate > math.log(40) - 1.0  # y = x is as dependent as it gets


def test_neural_mi_on_arrays_is_deterministic_for_a_seed() -> None:
    x, y = correlated_gaussian(0.8, 1000, seed=10)
    first, again = (mutual_information(x, y, method="nwj", steps=50, folds=2, seed=3) for _ in range(2))
    assert first == again
    assert mutual_information(x, y, method="nwj", steps=50, folds=2, seed=4) != first


@pytest.mark.parametrize(
    ("rows", "options", "message"),
    [(1000, {"folds": 1}, "folds must be at least 2"), (12, {"folds": 5}, "at least 2 rows in each of 5 folds")],
)
def test_neural_mi_bad_split_is_a_clear_error(rows: int, options: dict, message: str) -> None:
    x, y = correlated_gaussian(0.5, rows)
    with pytest.raises(DIMError, match=message):
        mutual_information(x, y, method="infonce", steps=10, **options)


@pytest.mark.slow
@pytest.mark.parametrize("bound", list(BOUNDS))
def test_neural_estimators_within_15_percent_on_the_staircase(bound: str) -> None:
    # Poole et al. (2019): d = 20, batch 64, fresh pairs every step; read out on 4,096 fresh pairs.
    for true_mi in (2.0, 4.0):
        sample = staircase(true_mi, np.random.default_rng(int(true_mi)))
        estimate = neural_mi_sampled(sample, bound=bound, steps=4000, batch_size=64)
        assert estimate == pytest.approx(true_mi, rel=0.15), f"{bound} at {true_mi} nats: {estimate:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("bound", ["infonce", "nwj"])
def test_neural_estimators_within_15_percent_on_a_fixed_staircase_sample(bound: str) -> None:
    # What users have: 20,000 fixed rows, no sampler (d = 20, 2 nats). A critic trained on one split overfit
    # them and read 18-22% low; cross-fitted over folds with a smaller critic it is within 10%.
    x, y = staircase(2.0, np.random.default_rng(0))(20_000)
    estimate = mutual_information(x, y, method=bound)
    assert estimate == pytest.approx(2.0, rel=0.15), f"{bound} on 20,000 fixed rows at 2 nats: {estimate:.3f}"


def test_sampled_infonce_never_above_log_of_evaluated_pairs() -> None:
    rng = np.random.default_rng(8)

    def identical(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, 2))
        return x, x

    estimate = neural_mi_sampled(identical, bound="infonce", steps=300, eval_size=100)
    assert math.log(100) - 1.0 < estimate <= math.log(100) + 1e-6


def test_sampler_returning_the_wrong_number_of_rows_is_a_clear_error() -> None:
    with pytest.raises(DIMError, match="exactly n pairs"):
        neural_mi_sampled(lambda n: (np.zeros((5, 2)), np.zeros((5, 2))), steps=10)


def test_entropies_match_closed_forms() -> None:
    assert entropy_discrete(np.arange(8).repeat(5)) == pytest.approx(math.log(8))
    gaussian = np.random.default_rng(4).standard_normal((20000, 1))
    assert entropy_knn(gaussian) == pytest.approx(0.5 * math.log(2 * math.pi * math.e), abs=0.03)


def test_max_mutual_information_finds_the_xor_pair() -> None:
    rng = np.random.default_rng(5)
    X = rng.integers(0, 2, size=(4000, 4))
    y = X[:, 1] ^ X[:, 3]  # no single feature says anything; the pair says everything
    subset, mi = max_mutual_information(X, y, max_order=2)
    assert subset == (1, 3)
    assert mi == pytest.approx(math.log(2), abs=0.01)
    assert max_mutual_information(X, y, max_order=1)[1] < 0.01


@pytest.mark.parametrize(
    ("x", "y", "options", "message"),
    [
        (np.zeros(10), np.zeros(9), {}, "same samples"),
        (np.array([1.0, np.nan, 2.0, 3.0, 4.0]), np.arange(5.0), {}, "NaN or inf"),
        (np.array([1.0, np.inf, 2.0, 3.0, 4.0]), np.arange(5.0), {}, "NaN or inf"),
        (np.arange(3.0), np.arange(3.0) ** 2, {"k": 3}, "more samples than neighbours"),
        (np.c_[np.arange(20.0), np.ones(20)], np.arange(20.0), {}, "constant column"),
    ],
)
def test_bad_input_raises_clear_errors(x, y, options: dict, message: str) -> None:
    with pytest.raises(DIMError, match=message):
        mutual_information(x, y, method="ksg", **options)


def test_unknown_method_names_the_choices() -> None:
    with pytest.raises(DIMError, match="ksg"):
        mutual_information(np.arange(5), np.arange(5), method="magic")


def test_cli_reads_npy_and_csv_and_bootstraps(tmp_path, capsys) -> None:
    x, y = correlated_gaussian(0.75, 2000, seed=6)
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "y.csv", y, delimiter=",")
    result = mi_cli([str(tmp_path / "x.npy"), str(tmp_path / "y.csv"), "--method", "ksg", "--bootstrap", "20"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == result
    assert printed["n"] == 2000 and printed["method"] == "ksg"
    assert printed["mi_bits"] == pytest.approx(printed["mi_nats"] / math.log(2))
    low, high = printed["ci95_nats"]
    # The resamples (about 63% distinct rows) read lower than the full sample, as KSG does at smaller n;
    # the interval still sits around the estimate.
    assert low < printed["mi_nats"] < high and high - low < 0.2
    assert printed["bootstrap_shift_nats"] < 0


@pytest.mark.parametrize("method", ["ksg", "infonce"])
def test_bootstrap_resamples_never_repeat_a_row_for_ksg_and_neural_methods(method: str) -> None:
    from dim_lightning.mi.__main__ import bootstrap_indices

    for idx in bootstrap_indices(500, 5, method, seed=0):
        assert len(np.unique(idx)) == len(idx)  # a neural critic must not meet its training rows at test time
    assert any(len(np.unique(idx)) < len(idx) for idx in bootstrap_indices(500, 5, "plugin", seed=0))


def test_cli_bad_file_exits_with_message(tmp_path, capsys) -> None:
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit) as exit_info:
        mi_cli([str(tmp_path / "x.csv"), str(tmp_path / "x.csv")])
    assert exit_info.value.code == 2
    assert "header" in capsys.readouterr().err


def test_cli_reads_a_csv_line_as_one_sample(tmp_path, capsys) -> None:
    """A one-line CSV of 500 values was read as 500 samples of one value (an answer, exit 0): it is one sample."""
    np.savetxt(tmp_path / "row.csv", np.random.default_rng(0).normal(size=(1, 500)), delimiter=",")
    with pytest.raises(SystemExit) as exit_info:
        mi_cli([str(tmp_path / "row.csv"), str(tmp_path / "row.csv"), "--method", "ksg"])
    assert exit_info.value.code == 2 and "n=1 <= k=3" in capsys.readouterr().err


def _header_declaring(path, shape: tuple[int, ...]) -> None:
    """A .npy file whose header declares `shape` of float64 over the bytes of a tiny array."""
    with path.open("wb") as file:
        np.lib.format.write_array_header_1_0(file, {"descr": "<f8", "fortran_order": False, "shape": shape})
        file.write(np.zeros(4).tobytes())


def test_cli_files_from_others_cost_what_they_hold(tmp_path, capsys) -> None:
    """A header declaring 64 GiB is refused before allocating; extreme values under bins=fd would ask numpy for
    billions of edges (or overflow); both are one message and exit 2."""
    _header_declaring(tmp_path / "huge.npy", (2**33,))
    outliers = np.r_[np.random.default_rng(0).normal(0, 1e-9, 2000), [1e6]]
    np.save(tmp_path / "outliers.npy", outliers)
    cases = {"huge.npy": "that its bytes hold", "outliers.npy": "pass a count, e.g. --bins 32"}
    for name, message in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            mi_cli([str(tmp_path / name), str(tmp_path / "outliers.npy"), "--method", "histogram"])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_cli_refuses_files_of_no_values_or_not_real_numbers(tmp_path, capsys) -> None:
    """A 128-byte header declaring (2**31, 0) took 2.4 GB and ended in a traceback; complex values lost their
    imaginary part with only a warning, exit 0."""
    _header_declaring(tmp_path / "wide0.npy", (2**31, 0))
    np.save(tmp_path / "complex.npy", np.exp(1j * np.arange(50.0)))
    np.save(tmp_path / "real.npy", np.arange(50.0))
    for name, message in {"wide0.npy": "x is empty (shape (2147483648, 0))", "complex.npy": "complex128"}.items():
        with pytest.raises(SystemExit) as exit_info:
            mi_cli([str(tmp_path / name), str(tmp_path / "real.npy"), "--method", "ksg"])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("scale", [1e200, 1e-310])
def test_ksg_does_not_depend_on_the_scale_even_near_the_ends_of_the_float_range(scale: float) -> None:
    """The columns' spread of values near 1e200 overflowed (every column became 0: MI about 0, silently), of
    subnormal ones underflowed (refused as constant)."""
    x, y = correlated_gaussian(0.8, 500, seed=2)
    expected = mutual_information(x, y, method="ksg")
    assert mutual_information(x * scale, y * scale, method="ksg") == pytest.approx(expected, abs=0.02)
    assert expected > 0.4


def test_ksg_matches_scikit_learn_in_one_dimension() -> None:
    from sklearn.feature_selection import mutual_info_regression

    x, y = correlated_gaussian(0.6, 3000, seed=7)
    theirs = mutual_info_regression(x[:, None], y, n_neighbors=3, random_state=0)[0]
    assert mutual_information(x, y, method="ksg", k=3) == pytest.approx(theirs, abs=1e-6)


def brute_force_ksg(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """KSG estimator 1 from the full max-norm distance matrices (no trees), columns scaled as ours are."""
    from scipy.special import digamma

    x, y = x / x.std(axis=0), y / y.std(axis=0)
    dx = np.abs(x[:, None] - x[None]).max(-1)
    dy = np.abs(y[:, None] - y[None]).max(-1)
    radius = np.sort(np.maximum(dx, dy), axis=1)[:, k]  # column 0 is the point itself
    n_x = (dx < radius[:, None]).sum(1) - 1
    n_y = (dy < radius[:, None]).sum(1) - 1
    return float(digamma(k) + digamma(len(x)) - np.mean(digamma(n_x + 1) + digamma(n_y + 1)))


@pytest.mark.parametrize("k", [1, 3])
def test_ksg_in_many_dimensions_equals_brute_force_on_any_thread_count(k: int) -> None:
    x, y, _ = dense_gaussian(400, seed=3)
    expected = brute_force_ksg(x, y, k)
    for workers in (1, 2, 3):
        assert mutual_information(x, y, method="ksg", k=k, workers=workers) == pytest.approx(expected, abs=1e-12)


def test_ksg_threads_follow_omp_num_threads(monkeypatch) -> None:
    from dim_lightning.mi.arrays import default_workers

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_workers() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_workers() == len(os.sched_getaffinity(0))
    assert mutual_information(*correlated_gaussian(0.5, 12), method="ksg", workers=16) > -1  # fewer rows than threads


def test_histogram_does_not_collapse_to_one_bin_on_tied_data() -> None:
    # ReLU features: most values tie at 0, so the interquartile range (Freedman-Diaconis' bin width) is 0.
    x, y = correlated_gaussian(0.9, 5000, seed=9)
    relu = np.maximum(x - 1.0, 0.0)
    assert np.percentile(relu, 75) == np.percentile(relu, 25) == 0.0
    estimate = mutual_information(relu, y, method="histogram")
    assert 0.2 < estimate < mutual_information(x, y, method="histogram")  # a ReLU keeps part of the information


def test_plugin_and_max_mutual_information_refuse_continuous_columns() -> None:
    rng = np.random.default_rng(10)
    X, labels = rng.standard_normal((500, 3)), rng.integers(0, 2, 500)  # independent: the MI is 0
    for call in (
        lambda: mutual_information(X[:, 0], labels, method="plugin"),
        lambda: max_mutual_information(X, labels, max_order=1),
    ):
        with pytest.raises(DIMError, match="method='ksg'"):
            call()
    _, mi = max_mutual_information(X, labels, max_order=1, method="histogram", bins=4)
    assert mi < 0.02
