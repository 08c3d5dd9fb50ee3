"""Random uint8 images with random labels, generated in memory: for benchmarks and smoke tests."""

from __future__ import annotations

import numpy as np

from dim_lightning.data.base import ArrayDataModule


class SyntheticDataModule(ArrayDataModule):
    def __init__(
        self,
        num_train: int = 4096,
        num_val: int = 512,
        num_classes: int = 10,
        image_size: int = 32,
        channels: int = 3,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(image_size=image_size, channels=channels, **kwargs)
        self.num_train, self.num_val, self.seed = num_train, num_val, seed
        self.class_names = [str(i) for i in range(num_classes)]

    def load_arrays(self):
        rng = np.random.default_rng(self.seed)
        shape = (self.channels, self.image_size, self.image_size)
        splits = []
        for n in (self.num_train, self.num_val):
            splits += [rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, self.num_classes, n)]
        return tuple(splits)
