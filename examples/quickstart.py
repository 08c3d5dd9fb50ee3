"""Train DIM on the built-in digits, load the trained encoder as another program would, and plot its codes.

    python examples/quickstart.py                           # the default recipe: a couple of minutes on a CPU
    python examples/quickstart.py trainer.max_epochs=3      # any train.py override

The run goes to outputs/quickstart/ (run it again: it is complete, so only the plot is redrawn); the picture of the
test images' codes (their two principal components, one colour per digit) to outputs/quickstart/codes.png."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from dim_lightning import load_encoder
from dim_lightning.config import CONF_DIR
from dim_lightning.data.digits import DigitsDataModule
from dim_lightning.train import train


def train_run(overrides: list[str], run_dir: Path) -> dict[str, float]:
    """`python train.py OVERRIDES hydra.run.dir=RUN_DIR`, from Python: the run's final numbers."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    return train(cfg).metrics


def plot_codes(codes: torch.Tensor, labels: torch.Tensor, path: Path) -> Path:
    """The codes' two principal components, one colour per label."""
    centred = codes - codes.mean(0)
    points = centred @ torch.linalg.svd(centred, full_matrices=False).Vh[:2].T
    figure, axis = plt.subplots(figsize=(5, 4.5))
    scatter = axis.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=8)
    axis.legend(*scatter.legend_elements(), title="digit", fontsize=7, loc="best")
    axis.set_title("DIM codes of the test digits (PCA)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main(overrides: list[str], run_dir: Path = Path("outputs/quickstart")) -> Path:
    metrics = train_run(overrides, run_dir)
    print(f"linear probe on the codes: val {metrics['probe/val_acc']:.4f}, test {metrics['probe/test_acc']:.4f}")
    encoder = load_encoder(run_dir / "checkpoints" / "last.ckpt")  # a checkpoint is read as data, never code
    data = DigitsDataModule(image_size=encoder.image_size)
    data.setup()
    images, labels = data.split("test").all_images()
    codes = encoder.encode(images.float() / 255)  # float (N, C, H, W) in [0, 1]; uint8 (N, H, W[, C]) works too
    path = plot_codes(codes.cpu(), labels, run_dir / "codes.png")
    print(f"codes of {len(labels)} test images: {path}")
    return path


if __name__ == "__main__":
    main(sys.argv[1:])
