"""encoder: the network mapping an image to its global code and local feature map (conf/encoder/)."""

from dim_lightning.config.checks import boolean, target
from dim_lightning.config.schema.key import Key

GROUP = "encoder"

KEYS = (
    Key("encoder._target_", target, "the encoder class; takes in_channels, image_size and model.z_dim"),
    Key("encoder.stochastic", boolean, "true: a Gaussian code (mean and log-variance, sampled; prior=kl needs it)"),
)
