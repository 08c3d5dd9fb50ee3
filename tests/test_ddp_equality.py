"""DDP optimises the single-device objective: 2 CPU processes (gloo) x B/2 images == 1 process x B images.

Each rank runs one real training step (`Trainer.fit`, strategy ddp, precision 64-true) of a `DIMModule` built
from the real config; the loss goes through `DIMModule._gather` -> `LightningModule.all_gather(sync_grads=True)`
and the gradients through DistributedDataParallel's averaging. The exact relation, checked here:

- Rank r's loss L_r is the mean over its B/2 anchors of a per-anchor loss whose negatives are the gathered global
  batch. For all-pairs negatives with InfoNCE and JSD that per-anchor loss is the single-device one, so the mean of
  the L_r (what `sync_dist` logs) equals the single-device loss L.
- all_gather's backward sums the gradient of every rank's loss into the rank that owns each feature, so summed over
  ranks the local backward passes give grad(sum_r L_r) = grad(2 L); DDP averages over the 2 ranks: grad L. No
  rescaling of the loss is needed (nor correct). Bounds that are not a mean over anchors (DV's log-mean-exp over
  all negatives) do not split this way and are not claimed equal.
- The blog recipe's shuffled negatives never gather: rank r pairs its anchors with a permutation of its own B/2
  images, so its objective is the single-device objective on its local half (tested below).

BatchNorm: per-half batch statistics differ from full-batch ones, so BatchNorm layers run in eval mode here (fixed
running statistics); the real multi-device config syncs them instead (`sync_batchnorm`, which needs CUDA).
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.multiprocessing as mp
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from pytorch_lightning.strategies import DDPStrategy
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, TensorDataset

from dim_lightning.config import CONF_DIR
from dim_lightning.config.builders import build_module
from dim_lightning.training import module as module_file
from dim_lightning.training.whole_step import WholeStep
from tests.conftest import TRAIN_ONLY

pytestmark = pytest.mark.slow  # two spawned gloo ranks (about 35 s): the slow lane

BATCH = 8
WHOLE_STEP_CASES = ["infonce_local", "jsd_global"]
CASES = {
    f"{estimator}_{term}": [
        f"estimator={estimator}",
        "critic=dot",
        "critic.network.units=32",
        "model.z_dim=16",
        *weights,
    ]
    for estimator in ("infonce", "jsd")
    for term, weights in (("local", ["model.alpha=0", "model.beta=1"]), ("global", ["model.alpha=1", "model.beta=0"]))
}


def _module(overrides: list[str], output_dir: str):
    """The DIMModule `train.py` would build for these overrides, with the same weights in every process."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
        del cfg.hydra
    GlobalHydra.instance().clear()
    torch.manual_seed(0)
    return build_module(cfg, channels=1, image_size=32)


def _images() -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(BATCH, 1, 32, 32, generator=generator, dtype=torch.float64), torch.zeros(BATCH))


class OneStep(pl.Callback):
    """Fixed BatchNorm statistics; records the step's loss and the gradients as the optimizer sees them."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for layer in pl_module.modules():
            if isinstance(layer, _BatchNorm):
                layer.eval()

    def on_after_backward(self, trainer, pl_module) -> None:
        self.grads = {name: p.grad.detach().clone() for name, p in pl_module.named_parameters() if p.grad is not None}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.loss = outputs["loss"].detach().clone()


def _fit_one_step(module, devices: int) -> OneStep:
    record = OneStep()
    strategy = DDPStrategy(process_group_backend="gloo") if devices > 1 else "auto"
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        precision="64-true",
        max_steps=1,
        **TRAIN_ONLY,
        callbacks=[record],
    )
    trainer.fit(module, train_dataloaders=DataLoader(_images(), batch_size=BATCH // devices))
    return record


def _worker(rank: int, port: int, out_dir: str) -> None:
    """One DDP rank (processes created here, so Lightning does not launch its own)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", NODE_RANK="0")
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)
    results = {}
    for name, overrides in CASES.items():
        record = _fit_one_step(_module(overrides, out_dir), devices=2)
        results[name] = {"loss": record.loss, "grads": record.grads}

    # The whole step (model.whole_step=true; eager here, the compiled graph is the same code): its own gradient
    # all-reduce and traceable gather. Adam's eps=1 makes the first update depend on the gradient's size.
    module_file.WholeStep = functools.partial(WholeStep, compile=False)
    for name in WHOLE_STEP_CASES:
        module = _module([*CASES[name], "model.whole_step=true", "model.optimizer.eps=1.0"], out_dir)
        record = _fit_one_step(module, devices=2)
        params = {key: value.detach().clone() for key, value in module.named_parameters()}
        results[f"whole_{name}"] = {"loss": record.loss, "params": params}

    # The blog recipe (concat critic, shuffled negatives) under DDP: the same random permutation gives the same
    # loss with the DDP gather as with none, so each rank's negatives are its own half of the batch.
    module = _module(["experiment=blog", "data=digits", "critic.network.hidden=16", "model.z_dim=16"], out_dir)
    _fit_one_step(module, devices=2)
    module.to(torch.float64)
    assert module._gather(torch.zeros(3, 2, dtype=torch.float64))[0].shape[0] == 6  # the gather does gather
    images = _images().tensors[0][rank::2]
    with torch.no_grad():
        out = module.encoder(images)
        for name, term in module.terms.items():
            torch.manual_seed(7)
            under_ddp = term(out, module._gather).loss
            torch.manual_seed(7)
            local_only = term(out).loss
            results[f"shuffled_{name}"] = {"ddp": under_ddp, "local": local_only}
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=2, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(2)]


@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_on_half_batches_equal_one_device_on_the_batch(ranks, tmp_path, case: str) -> None:
    single = _fit_one_step(_module(CASES[case], str(tmp_path)), devices=1)
    assert float(single.loss) != 0.0
    ddp_loss = (ranks[0][case]["loss"] + ranks[1][case]["loss"]) / 2  # what sync_dist logs
    torch.testing.assert_close(ddp_loss, single.loss, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(ranks[0][case]["loss"], ranks[1][case]["loss"])  # the halves really differ
    grads = ranks[0][case]["grads"]
    assert grads.keys() == single.grads.keys() and any(name.startswith("encoder.") for name in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ranks[1][case]["grads"][name])  # DDP averaged them
        torch.testing.assert_close(grad, single.grads[name], rtol=1e-8, atol=1e-12, msg=name)


@pytest.mark.parametrize("case", WHOLE_STEP_CASES)
def test_whole_step_on_two_ranks_updates_the_weights_as_one_device(ranks, tmp_path, case: str) -> None:
    module = _module([*CASES[case], "model.optimizer.eps=1.0"], str(tmp_path))
    single = _fit_one_step(module, devices=1)  # the default path, one device, the whole batch
    whole = [rank[f"whole_{case}"] for rank in ranks]
    torch.testing.assert_close((whole[0]["loss"] + whole[1]["loss"]) / 2, single.loss, rtol=1e-10, atol=1e-12)
    for name, value in module.named_parameters():
        torch.testing.assert_close(whole[0]["params"][name], whole[1]["params"][name], rtol=0, atol=0, msg=name)
        torch.testing.assert_close(whole[0]["params"][name], value.detach(), rtol=1e-8, atol=1e-12, msg=name)


def test_shuffled_negatives_stay_on_each_ranks_half(ranks) -> None:
    for rank in ranks:
        for term in ("local", "global"):
            result = rank[f"shuffled_{term}"]
            torch.testing.assert_close(result["ddp"], result["local"], rtol=0, atol=0)
