"""trainer: Lightning's Trainer arguments (conf/trainer/; any other Trainer argument may be added with
+trainer.NAME=VALUE). Valid precisions, accelerators and strategies are Lightning's own. Lightning's
DistributedSampler is always off (not a setting): the data module shards batches itself, the same order on any
device count."""

from dim_lightning.config.checks import (
    any_of,
    boolean,
    documented,
    integer,
    list_of,
    non_negative,
    number,
    one_of,
    optional,
    path,
    target,
)
from dim_lightning.config.schema.key import Key
from dim_lightning.config.schema.registries import ACCELERATORS, PRECISIONS, STRATEGIES

GROUP = "trainer"

limit = any_of(number(0, 1), integer(0))
endless = any_of(integer(1), one_of([-1]))

KEYS = (
    Key("trainer._target_", target, "the Trainer class"),
    Key("trainer.default_root_dir", path, "where Lightning writes by default (the run dir)"),
    Key("trainer.max_epochs", endless, "epochs to train (-1: until max_steps)"),
    Key("trainer.max_steps", endless, "optimizer steps to train (-1: until max_epochs)"),
    Key("trainer.accelerator", one_of(ACCELERATORS), "the device kind (auto: a GPU when there is one)"),
    Key(
        "trainer.devices",
        any_of(integer(1), one_of([-1, "auto"]), list_of(integer(0))),
        "devices per node; more than 1 trains DDP (one process each, negatives gathered)",
    ),
    Key("trainer.num_nodes", integer(1), "machines (SLURM: hydra/launcher=submitit_slurm uses it as its nodes)"),
    Key("trainer.strategy", one_of(STRATEGIES), "auto: plain on one device, DDP on several"),
    Key("trainer.sync_batchnorm", optional(boolean), "sync BatchNorm statistics over devices (null: on several GPUs)"),
    Key("trainer.precision", one_of(PRECISIONS), "numeric precision (bf16-mixed: bf16 autocast on GPUs)"),
    Key("trainer.log_every_n_steps", integer(1), "log (and refresh the progress bar) every N steps"),
    Key("trainer.check_val_every_n_epoch", optional(integer(1)), "run validation every N epochs"),
    Key(
        "trainer.limit_train_batches",
        optional(limit),
        "train on this fraction (float) or number (int) of batches per epoch (null: all)",
    ),
    Key("trainer.limit_val_batches", optional(limit), "validate on this fraction (float) or number (int) of batches"),
    Key("trainer.accumulate_grad_batches", integer(1), "sum gradients over N batches per optimizer step"),
    Key("trainer.deterministic", any_of(boolean, one_of(["warn"])), "deterministic algorithms (warn: warn only)"),
    Key("trainer.gradient_clip_val", optional(non_negative), "clip gradients at this value (null: no clipping)"),
    Key("trainer.gradient_clip_algorithm", optional(one_of(["norm", "value"])), "clip the gradient norm or values"),
    Key("trainer.benchmark", optional(boolean), "cuDNN picks the fastest convolutions for the fixed batch shape"),
    Key("trainer.fast_dev_run", any_of(boolean, integer(1)), "true: one train and one val batch, nothing saved"),
    Key("trainer.num_sanity_val_steps", any_of(integer(0), one_of([-1])), "val batches checked before training"),
    Key("trainer.enable_progress_bar", boolean, "false: no progress bar (the callback is left out)"),
    Key(
        "trainer.plugins",
        documented("a list of Lightning plugin configs"),
        "AtomicCheckpointIO: checkpoints written to a temp file, then renamed (weights_only unless trusted)",
    ),
)
