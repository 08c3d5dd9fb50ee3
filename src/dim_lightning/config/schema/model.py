"""model: Deep InfoMax's loss weights and code size, the optimiser, and speed options (conf/model/).
loss = alpha * global MI + beta * local MI + gamma * prior. Adam's own settings live under model.optimizer."""

from dim_lightning.config.checks import (
    boolean,
    integer,
    list_of,
    non_negative,
    number,
    one_of,
    optional,
    partial,
    positive,
    target,
)
from dim_lightning.config.schema.key import Key

GROUP = "model"
# torch.compile's modes and torch.set_float32_matmul_precision's levels.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
MATMUL_PRECISIONS = ("highest", "high", "medium")

KEYS = (
    Key("model.alpha", non_negative, "weight of the global MI term (code vs the whole local map)"),
    Key("model.beta", non_negative, "weight of the local MI term (code vs each location of the local map)"),
    Key("model.gamma", non_negative, "weight of the prior-matching term (needs a prior, e.g. prior=kl)"),
    Key("model.z_dim", integer(1, 4096), "size of the global code"),
    Key("model.lr", positive, "learning rate of the optimiser (model.optimizer.lr reads it; sweeps set it)"),
    Key("model.skip_nonfinite", boolean, "true: skip a batch whose loss is NaN/inf (counted) instead of stopping"),
    Key("model.optimizer._target_", target, "the optimiser factory (Adam over every trained network)"),
    Key("model.optimizer._partial_", partial, "called with the parameters"),
    Key("model.optimizer.lr", positive, "Adam's learning rate (default: model.lr)"),
    Key("model.optimizer.betas", list_of(number(0, 1, high_open=True)), "Adam's betas (moment decay rates)"),
    Key("model.optimizer.eps", positive, "Adam's epsilon (Keras, the blog: 1e-7)"),
    Key("model.optimizer.weight_decay", non_negative, "Adam's L2 weight decay"),
    Key("model.optimizer.fused", optional(boolean), "null: the fused kernel when the parameters are on CUDA"),
    Key("model.channels_last", boolean, "speed: encoder weights and input images in NHWC"),
    Key("model.compile", boolean, "speed: torch.compile the encoder and critic networks"),
    Key(
        "model.compile_mode",
        optional(one_of(COMPILE_MODES)),
        "torch.compile's mode (reduce-overhead: CUDA graphs; null: default, or reduce-overhead for whole_step on CUDA)",
    ),
    Key("model.whole_step", boolean, "speed: forward, loss, gradients and Adam as one compiled graph per step"),
    Key("model.matmul_precision", optional(one_of(MATMUL_PRECISIONS)), "float32 matmuls on CUDA (high: TF32)"),
)
