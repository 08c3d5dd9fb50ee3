"""critic: the networks scoring (code, feature) pairs, how negatives are drawn and what the global term pairs
the code with (conf/critic/)."""

from dim_lightning.config.checks import boolean, integer, optional, partial, positive, target
from dim_lightning.config.schema.key import Key

GROUP = "critic"

KEYS = (
    Key("critic.network._target_", target, "the critic class (sized from one sample forward pass)"),
    Key("critic.network.hidden", integer(1, 8192), "concat: hidden units of each MLP layer (default: model.z_dim)"),
    Key("critic.network.layers", integer(1, 16), "concat: MLP layers"),
    Key("critic.network.units", integer(1, 8192), "dot: embedding units of the encode-and-dot critic"),
    Key("critic.network.temperature", optional(positive), "dot: scores divided by it; null: by sqrt(units)"),
    Key("critic.negatives._target_", target, "how negative pairs are drawn (all pairs or a shuffle)"),
    Key("critic.negatives._partial_", partial, "the negatives function is called per batch"),
    Key(
        "critic.negatives.allow_self",
        boolean,
        "concat: true is the blog's plain shuffle, which sometimes pairs an image with itself",
    ),
    Key("critic.global_view._target_", target, "what the global term pairs the code with"),
    Key("critic.global_view._partial_", partial, "the view function is called per batch"),
)
