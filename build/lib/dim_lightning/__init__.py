"""dim-lightning: Deep InfoMax and mutual-information estimation with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
