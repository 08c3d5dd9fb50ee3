"""The fast path's switches: channels_last and torch.compile keep the model's results and parameter names,
the optimizer factory fuses Adam only on CUDA, and the profiler config writes a trace."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from dim_lightning.config.builders import build_module
from dim_lightning.train import train
from dim_lightning.training.optim import adam, use_fused
from dim_lightning.training.speed import Speedups
from tests.conftest import FAST, SMALL_CRITIC


def _modules(make_config, *overrides: str):
    """Two copies of the same small module, the second with `overrides` and its configure_model applied."""
    cfg = make_config(*FAST, SMALL_CRITIC["dot"], "model.z_dim=16", "model.channels_last=false")
    plain = build_module(cfg, channels=1, image_size=32)
    fast = build_module(make_config(*FAST, SMALL_CRITIC["dot"], "model.z_dim=16", *overrides), 1, 32)
    fast.load_state_dict(plain.state_dict())
    fast.configure_model()
    return plain, fast


def _loss(module, images):
    torch.manual_seed(0)
    return module.objective(module.encoder(images))["loss"]


def test_channels_last_changes_the_layout_not_the_result(make_config) -> None:
    plain, fast = _modules(make_config, "model.channels_last=true")

    def second_conv(module):  # the first one has a single input channel: both layouts at once
        return [m for m in module.encoder.modules() if isinstance(m, torch.nn.Conv2d)][1].weight

    assert second_conv(fast).is_contiguous(memory_format=torch.channels_last)
    assert not second_conv(plain).is_contiguous(memory_format=torch.channels_last)
    images = torch.randn(8, 1, 32, 32)
    torch.testing.assert_close(_loss(fast, images), _loss(plain, images), rtol=1e-4, atol=1e-5)
    fast.configure_model()  # a second fit must not stack hooks
    assert len(fast.encoder._forward_pre_hooks) == 1
    assert set(fast.state_dict()) == set(plain.state_dict())


@pytest.mark.slow
def test_compile_wraps_encoder_and_critics_and_keeps_results(make_config) -> None:
    plain, fast = _modules(make_config, "model.compile=true")
    assert fast.encoder._compiled_call_impl is not None
    critic = fast.terms["local"].critic
    assert all(child._compiled_call_impl is not None for child in critic.children())
    images = torch.randn(8, 1, 32, 32)
    torch.testing.assert_close(_loss(fast, images), _loss(plain, images), rtol=1e-4, atol=1e-4)
    assert set(fast.state_dict()) == set(plain.state_dict())  # checkpoints stay interchangeable


def test_adam_is_fused_only_when_every_parameter_is_on_cuda() -> None:
    on_cuda = SimpleNamespace(device=torch.device("cuda", 0))  # the decision reads only the device: no GPU needed
    on_cpu = torch.nn.Parameter(torch.zeros(3))
    assert use_fused([on_cuda, on_cuda], None, clips_under_mixed_precision=False)
    assert not use_fused([on_cuda, on_cpu], None, clips_under_mixed_precision=False)  # one host tensor: unfused
    assert not use_fused([on_cuda], None, clips_under_mixed_precision=True)  # Lightning clips unfused Adam only
    assert not use_fused([], None, clips_under_mixed_precision=False)
    assert use_fused([on_cpu], True, clips_under_mixed_precision=False)  # an explicit choice is kept
    assert not adam([on_cpu], lr=1e-3).defaults["fused"]
    assert not adam([{"params": [on_cpu]}], lr=1e-3).defaults["fused"]


def test_profile_config_writes_a_trace_of_a_few_steps(make_config, tmp_path) -> None:
    schedule = [f"trainer.profiler.schedule.{k}=1" for k in ("wait", "warmup", "active")]
    trainer = train(make_config(*FAST, SMALL_CRITIC["dot"], "debug=profile", "trainer.max_steps=3", *schedule)).trainer
    assert trainer.global_step == 3
    traces = list((tmp_path / "profile").glob("*.pt.trace.json"))
    assert len(traces) == 1 and traces[0].stat().st_size > 1000


@pytest.mark.parametrize(
    ("precision", "clip", "clips_under_amp"),
    [("bf16-mixed", 1.0, True), ("16-mixed", 0.5, True), ("32-true", 1.0, False), ("bf16-mixed", None, False)],
)
def test_clipping_under_mixed_precision_picks_the_unfused_adam(make_config, precision, clip, clips_under_amp) -> None:
    import pytorch_lightning as pl

    module = build_module(make_config(*FAST, SMALL_CRITIC["dot"], "model.z_dim=16"), channels=1, image_size=32)
    if precision == "16-mixed" and not torch.cuda.is_available():
        precision = "bf16-mixed"  # 16-mixed needs CUDA; the plugin class is the same
    module._trainer = pl.Trainer(accelerator="cpu", precision=precision, gradient_clip_val=clip, logger=False)
    assert module._clips_under_mixed_precision() is clips_under_amp
    assert module.configure_optimizers().defaults["fused"] is None  # CPU parameters: never fused
    on_cuda = [SimpleNamespace(device=torch.device("cuda"))]  # the decision for CUDA parameters
    assert use_fused(on_cuda, None, clips_under_amp) is not clips_under_amp
    assert use_fused(on_cuda, False, clips_under_amp) is False  # an explicit fused=true with clipping under
    # mixed precision is refused by config validation (tests/test_validation.py), before anything is built


def test_step_outputs_hand_probes_a_copy_of_the_embedding(make_config) -> None:
    # Under compile_mode=reduce-overhead the encoder's outputs live in CUDA-graph memory that the next replay
    # overwrites; the epoch probes keep the step's embedding for the whole epoch, so it must be a copy.
    module = build_module(make_config(*FAST, SMALL_CRITIC["dot"], "model.z_dim=16"), channels=1, image_size=32)
    seen = {}
    module.encoder.register_forward_hook(lambda _module, _args, out: seen.update(mean=out.Y))
    outputs, _ = module._step((torch.randn(4, 1, 32, 32), torch.zeros(4, dtype=torch.long)), "val")
    torch.testing.assert_close(outputs["embedding"], seen["mean"].detach())
    assert outputs["embedding"].untyped_storage().data_ptr() != seen["mean"].untyped_storage().data_ptr()


def test_tf32_matmuls_are_asked_for_only_on_cuda() -> None:
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        Speedups(matmul_precision="high").set_matmul_precision(torch.device("cpu"))
        assert torch.get_float32_matmul_precision() == "highest"
        Speedups(matmul_precision="high").set_matmul_precision(torch.device("cuda"))
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)
