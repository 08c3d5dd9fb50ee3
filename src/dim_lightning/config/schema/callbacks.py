"""callbacks: what runs beside training, one conf/callbacks/<name>.yaml each (and the drills of conf/debug/, the
W&B run-id saver of logger=wandb). Any one is switched off with callbacks.NAME=null; `eval.*` configures the
final evaluation. Where the run's files go is not a setting: the checkpoint callbacks write only
`<run dir>/checkpoints/last.ckpt` and the final evaluation `<run dir>/metrics.json`, where resume, sweeps and
dim-report read them (a run moves as a whole, with hydra.run.dir)."""

from dim_lightning.config.checks import (
    boolean,
    integer,
    interpolation,
    optional,
    partial,
    positive,
    seed,
    target,
)
from dim_lightning.config.schema.key import Key

GROUP = "callbacks"


def _every(name: str, what: str) -> Key:
    return Key(f"callbacks.{name}.every_n_epochs", integer(1), f"{what} every N epochs")


def _classes(*names: str) -> tuple[Key, ...]:
    return tuple(Key(f"callbacks.{n}._target_", target, f"the {n.replace('_', ' ')} callback class") for n in names)


KEYS = (
    *_classes(
        "nonfinite_guard",
        "model_checkpoint",
        "epoch_checkpoint",
        "preemption_checkpoint",
        "epoch_means",
        "online_probe",
        "throughput",
        "linear_probe",
        "knn_probe",
        "final_evaluation",
        "wandb_run_id",
        "progress_bar",
        "model_summary",
    ),
    Key("callbacks.nonfinite_guard.skip", boolean, "skip non-finite batches (set by model.skip_nonfinite)"),
    Key("callbacks.nonfinite_guard.check_every_n_steps", integer(1), "on GPU: read the device-side flag every N steps"),
    Key(
        "callbacks.model_checkpoint.every_n_train_steps",
        optional(integer(1)),
        "last.ckpt every N optimizer steps (a killed run loses at most N); null: epoch ends and stops only",
    ),
    Key(
        "callbacks.preemption_checkpoint.check_every_n_steps",
        integer(1),
        "under DDP: ranks compare stop signals every N steps (one all-reduce)",
    ),
    Key("callbacks.online_probe.lr", positive, "learning rate of the online linear probe on detached codes"),
    Key("callbacks.online_probe.seed", seed, "the probe's own initialisation seed"),
    Key("callbacks.throughput.warmup_steps", integer(0), "steps left out of train/img_per_s (compilation, warm-up)"),
    _every("linear_probe", "probe/epoch_val_acc: the linear probe on eval-mode codes"),
    Key("callbacks.linear_probe.max_train_images", optional(integer(2)), "train images the epoch probe fits on"),
    _every("knn_probe", "knn/epoch_val_acc: weighted kNN on eval-mode codes"),
    Key("callbacks.knn_probe.max_train_images", optional(integer(2)), "train images the epoch kNN searches"),
    Key("callbacks.knn_probe.k", integer(1), "neighbours of the epoch kNN (default: eval.suite.knn_k)"),
    Key(
        "callbacks.knn_probe.temperature",
        positive,
        "temperature of the epoch kNN (default: eval.suite.knn_temperature)",
    ),
    Key("callbacks.final_evaluation.enabled", interpolation, "set by eval.final"),
    Key("callbacks.final_evaluation.suite", interpolation, "set by eval.suite"),
    Key("callbacks.final_evaluation.random_init_baseline", interpolation, "set by eval.random_init_baseline"),
    Key("callbacks.final_evaluation.random_encoder._target_", target, "builds the untrained twin of the encoder"),
    Key("callbacks.final_evaluation.random_encoder._partial_", partial, "called with the run's image shape"),
    Key("callbacks.final_evaluation.seed", seed, "seeds the evaluation (probes, baseline encoder)"),
    Key("callbacks.progress_bar.refresh_rate", integer(0), "refresh every N steps (trainer.log_every_n_steps)"),
    Key("callbacks.model_summary.max_depth", integer(0), "module depth listed (0: no summary)"),
)
