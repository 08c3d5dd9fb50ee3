"""dim-lightning: Deep InfoMax and mutual-information estimation with PyTorch Lightning and Hydra.

`from dim_lightning import load_encoder` gives a trained encoder to other programs (imported on first use, so
`import dim_lightning.mi` stays light)."""

from typing import Any

from dim_lightning.config.resolvers import register_resolvers

register_resolvers()  # the config tree's ${dim.*} resolvers, before any config is composed

__version__ = "0.1.0"
__all__ = ["load_encoder"]


def __getattr__(name: str) -> Any:
    if name == "load_encoder":
        from dim_lightning.pretrained import load_encoder

        return load_encoder
    raise AttributeError(f"module 'dim_lightning' has no attribute {name!r}")
