"""Top-level keys of conf/train.yaml (`python train.py`) and conf/evaluate.yaml (`python -m dim_lightning.evaluate`)."""

from dim_lightning.config.checks import Check, boolean, optional, path, seed, text
from dim_lightning.config.schema.key import Key

GROUP = "top-level keys"


def _selection_problem(value) -> str:
    if not isinstance(value, str):
        return "must be a metric name such as probe/val_acc"
    return (
        "reads the official held-out split, which must never be optimized (it is reported beside the "
        "selection numbers); optimize its */val_acc twin, e.g. probe/val_acc"
    )


selection_metric = Check(
    "a metrics.json key read on the model-selection split (e.g. probe/val_acc), never a *test* one",
    lambda value: isinstance(value, str) and "test" not in value,
    _selection_problem,
)

KEYS = (
    Key("task_name", text, "names the output folder: outputs/<task_name>/runs/..."),
    Key("seed", seed, "seeds everything (weights, data order via data.shuffle_seed, probes)"),
    Key(
        "optimized_metric",
        optional(selection_metric),
        "the number `main` returns for sweepers (Optuna) and multirun summaries sort by (higher is better)",
    ),
    Key("resume", boolean, "the same command in a run dir holding a run continues it; false starts afresh there"),
    Key("ckpt_path", path, "resume this checkpoint (a file, or `last` for the run dir's own), also with new settings"),
    Key(
        "trust_checkpoint",
        boolean,
        "true: load checkpoints with full unpickling and their saved config as is (can run code; trusted files only)",
    ),
    Key("ckpt", path, "evaluate: the checkpoint to evaluate (written by train.py)"),
    Key("random_init", boolean, "evaluate: an untrained encoder of the checkpoint's shape instead of the trained one"),
)
