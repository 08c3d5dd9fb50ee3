"""`model.whole_step=true`: one training step as one compiled graph gives the default path's results.

Both paths train the same module (same weights, same batches, same seed) for 5 steps through a real Lightning
`Trainer`; the losses of every step and the weights after the last one agree up to float rounding. The compiled
step must compile with `fullgraph=True` (no graph break: what capturing the step as one CUDA graph needs) and
read nothing on the host."""

from __future__ import annotations

import contextlib
import copy
import functools
import os

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils._config_module import ConfigModule
from torch.utils.data import DataLoader, TensorDataset

from dim_lightning.config.builders import build_module
from dim_lightning.config.validation import validate_config
from dim_lightning.errors import DIMError
from dim_lightning.models.encoders import EncoderOutput, GlobalMaxPool, _blog_block
from dim_lightning.training import compile_cache
from dim_lightning.training import module as module_file
from dim_lightning.training.cudagraph_skips import CudaGraphSkips
from dim_lightning.training.whole_step import WholeStep, compile_options, resolve_compile_mode
from tests.conftest import FAST, SMALL_CRITIC, TRAIN_ONLY
from tests.host_sync import HostSyncCounter

STEPS = 5
RECIPES = {
    # the default objective: DCGAN encoder, encode-and-dot critic, InfoNCE over all pairs (deterministic step)
    "infonce_all_pairs": ["model.z_dim=16", SMALL_CRITIC["dot"], "model.alpha=0.5"],
    # the blog's: Gaussian code (sampled), concat critics, shuffled negatives, JSD, KL prior (random draws)
    "blog": ["experiment=blog", "data=digits", "data.image_size=32", "model.z_dim=16", SMALL_CRITIC["concat"]],
}


class Record(pl.Callback):
    """Each step's loss; with `count_syncs`, the host reads of whole training-loop iterations from the 2nd on
    (step, callbacks and Lightning's logging; a dispatch mode, which torch.compile does not allow around a
    compiled call: there fullgraph=True is the check)."""

    def __init__(self, count_syncs: bool) -> None:
        self.losses: list[torch.Tensor] = []
        self.count_syncs = count_syncs
        self.syncs = 0
        self.counter: HostSyncCounter | None = None

    def _close(self) -> None:
        if self.counter is not None:
            self.counter.__exit__(None, None, None)
            self.syncs += self.counter.total
            self.counter = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._close()
        if self.count_syncs and batch_idx > 0:  # the 1st step creates Adam's state
            steps = [state["step"] for state in trainer.optimizers[0].state.values()]  # Adam's, on the host
            self.counter = HostSyncCounter(host_resident=steps).__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].detach().clone())

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._close()

    def on_train_end(self, trainer, pl_module) -> None:
        self._close()


def _fit(module, images: torch.Tensor, count_syncs: bool = False) -> Record:
    record = Record(count_syncs)
    trainer = pl.Trainer(
        accelerator="cpu",
        precision="64-true",  # float32 rounding differences flip the sign of Adam's first updates of ~0 gradients
        max_steps=STEPS,
        **TRAIN_ONLY,
        log_every_n_steps=2,
        callbacks=[record],
    )
    torch.manual_seed(3)
    loader = DataLoader(TensorDataset(images, torch.zeros(len(images), dtype=torch.long)), batch_size=8)
    trainer.fit(module, train_dataloaders=loader)
    return record


def _pair(make_config, recipe: str):
    overrides = [*FAST, *RECIPES[recipe], "model.channels_last=false"]
    torch.manual_seed(0)
    default = build_module(make_config(*overrides), channels=1, image_size=32)
    fast = build_module(make_config(*overrides, "model.whole_step=true"), channels=1, image_size=32)
    fast.load_state_dict(default.state_dict())
    return default, fast


def _check_equal(default, fast, make_fast_step) -> None:
    images = torch.randn(STEPS * 8, 1, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = _fit(default, images, count_syncs=True)
    assert expected.syncs == 0  # the default step reads nothing on the host either
    with make_fast_step():
        got = _fit(fast, images)
    assert not fast.automatic_optimization and fast.global_step == STEPS
    assert fast.optimizers().optimizer.defaults["capturable"] is False  # True on CUDA (step counts on the device)
    torch.testing.assert_close(torch.stack(got.losses), torch.stack(expected.losses), rtol=1e-9, atol=1e-10)
    assert not torch.allclose(expected.losses[0], expected.losses[-1])  # it trained
    for (name, want), have in zip(default.state_dict().items(), fast.state_dict().values(), strict=True):
        torch.testing.assert_close(have, want, rtol=1e-9, atol=1e-10, msg=name)
    assert fast.trainer.callback_metrics["train/loss"] == pytest.approx(float(torch.stack(got.losses).mean()))


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_whole_step_equals_the_default_path_after_5_steps(make_config, monkeypatch, recipe: str) -> None:
    """The step's logic (gradients, all-reduce-free single device, functional Adam, device-side metrics), eager."""
    monkeypatch.setattr(module_file, "WholeStep", functools.partial(WholeStep, compile=False))
    _check_equal(*_pair(make_config, recipe), contextlib.nullcontext)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_compiled_whole_step_has_no_graph_break_and_equals_the_default_path(make_config, recipe: str) -> None:
    default, fast = _pair(make_config, recipe)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    _check_equal(default, fast, lambda: torch._inductor.config.patch(fallback_random=True))  # eager's draws
    assert fast._whole_step._step is not None
    assert sum(torch._dynamo.utils.counters["graph_break"].values()) == 0
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_whole_step_refuses_what_it_does_not_do(make_config) -> None:
    """Config validation names each setting the whole step does not do (listed with the config's other problems:
    tests/test_validation.py); the same settings without whole_step are fine."""
    settings = {
        "trainer.gradient_clip_val=1.0": "gradient_clip_val",
        "model.skip_nonfinite=true": "skip_nonfinite",
        "+trainer.accumulate_grad_batches=2": "accumulate_grad_batches",
        "prior=adversarial model.gamma=0.1": "prior=adversarial",
        "trainer.precision=16-mixed": "a gradient scaler",
    }
    for setting, named in settings.items():
        cfg = make_config(*FAST, "model.z_dim=16", SMALL_CRITIC["dot"], "model.whole_step=true", *setting.split())
        with pytest.raises(DIMError, match=f"whole_step=true does not support .*{named}.*set model.whole_step=false"):
            validate_config(cfg)
        validate_config(make_config(*FAST, "model.z_dim=16", SMALL_CRITIC["dot"], *setting.split()))


def test_whole_step_refuses_an_optimizer_it_would_not_run(make_config) -> None:
    """The optimizer object itself (any model.optimizer._target_ may build it): the functional Adam of the step
    would silently replace SGD or AMSGrad, so WholeStep checks what it is handed."""
    module = build_module(make_config(*FAST, "model.z_dim=16", SMALL_CRITIC["dot"]), channels=1, image_size=32)
    params = list(module.parameters())
    for optimizer in (torch.optim.SGD(params, lr=0.1), torch.optim.Adam(params, amsgrad=True)):
        with pytest.raises(DIMError, match=r"model\.whole_step=true"):
            WholeStep(module.encoder, module.objective, optimizer, compile=False)


def test_a_cut_epochs_device_sums_travel_in_the_checkpoint(make_config, tmp_path) -> None:
    """A stop mid-epoch saves the whole step's epoch sums (plain tensors), and the resumed module continues them,
    so the epoch's logged means cover all its steps, not only the resumed ones."""
    cut = build_module(make_config(*FAST, "model.whole_step=true"), channels=1, image_size=32)
    for step in range(3):
        cut.step_metrics.add(torch.arange(len(cut.metric_names), dtype=torch.float32) + step)
    checkpoint = {}
    cut.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "cut.ckpt")
    resumed = build_module(make_config(*FAST, "model.whole_step=true"), channels=1, image_size=32)
    resumed.on_load_checkpoint(torch.load(tmp_path / "cut.ckpt", weights_only=True))
    resumed.step_metrics.add(torch.arange(len(cut.metric_names), dtype=torch.float32) + 3)
    expected = torch.arange(len(cut.metric_names), dtype=torch.float32) + 1.5  # mean over steps 0..3
    torch.testing.assert_close(resumed.step_metrics.take_epoch(), expected)


class MaxPooledBlock(nn.Module):
    """The blog encoder's last stage in small: conv/BN/LeakyReLU block, global max pool, linear code."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.block = _blog_block(channels, channels, False)
        self.pool, self.head = GlobalMaxPool(), nn.Linear(channels, 4)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        local = self.block(images)
        pooled = self.pool(local)
        code = self.head(pooled)
        return EncoderOutput(code=code, Y=code, log_var=None, local=local, conv=local, fc=pooled)


@pytest.mark.slow  # a cold inductor compile: about 45 s of CPU
def test_compiled_whole_step_under_bf16_autocast_stays_finite_and_equals_eager() -> None:
    """Under bf16 autocast (`trainer.precision=bf16-mixed`, the GPU fast path) the compiled step must keep eager's
    numerics: the blog encoder's global max pool (`amax`) passes gradient only where its input equals the max, and
    a compiled backward that recomputes that input without eager's rounding to bf16 finds no max (NaN weights)."""
    torch.manual_seed(0)
    encoder = MaxPooledBlock()

    def objective(out, gather) -> dict[str, torch.Tensor]:
        return {"loss": out.Y.float().square().mean()}

    images = torch.randn(4, 8, 2, 2, generator=torch.Generator().manual_seed(1))  # a 2x2 map: few values to max
    results = {}
    for compiled in (False, True):
        model = copy.deepcopy(encoder)
        step = WholeStep(model, objective, torch.optim.Adam(model.parameters(), lr=1e-3), compile=compiled)
        torch._dynamo.reset()
        losses = []
        for _ in range(2):  # autocast per step, as Lightning enters it (it caches bf16 copies of the weights)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                losses.append(step(images)[0][0])
        results[compiled] = torch.stack(losses), torch.cat([p.detach().flatten() for p in model.parameters()])
    (eager_losses, eager_weights), (losses, weights) = results[False], results[True]
    assert torch.isfinite(losses).all() and torch.isfinite(weights).all()
    torch.testing.assert_close(losses, eager_losses, rtol=1e-2, atol=0)
    # Adam moves a weight by about lr per step; one with a ~0 gradient (the conv bias before BN) either way
    torch.testing.assert_close(weights, eager_weights, rtol=0, atol=4e-3)


class TinyEncoder(nn.Module):
    """A linear code: the smallest encoder a `WholeStep` runs (no convolution, so dynamo traces it in seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 4)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        code = self.linear(images)
        return EncoderOutput(code=code, Y=code, log_var=None, local=code, conv=code, fc=code)


def _square_loss(out: EncoderOutput, gather) -> dict[str, torch.Tensor]:
    return {"loss": out.Y.square().mean()}


class StaticInputs:
    """A dynamo backend that records, for each graph it is given, which inputs dynamo treats as static (fixed
    address: what CUDA graphs need of a tensor the step changes in place) and its operators, then runs the
    graph eagerly."""

    def __init__(self) -> None:
        self.graphs: list[dict[int, bool]] = []  # per graph: id(input tensor) -> static
        self.operators: list[str] = []

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor], **options):
        placeholders = graph.graph.find_nodes(op="placeholder")
        self.graphs.append(
            {
                id(tensor): bool(node.meta.get("tensor_dict", {}).get("_dynamo_static_input_type"))
                for node, tensor in zip(placeholders, example_inputs, strict=True)
            }
        )
        self.operators += [str(node.target) for node in graph.graph.nodes if node.op == "call_function"]
        return graph.forward


@pytest.fixture
def recorded(monkeypatch) -> StaticInputs:
    """Every `torch.compile` in the test compiles with the recording backend (no inductor: seconds, not a minute)."""
    recorder = StaticInputs()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=recorder))
    torch._dynamo.reset()
    return recorder


def test_adams_state_enters_the_compiled_step_as_static_inputs(recorded: StaticInputs) -> None:
    """Adam's exp_avg, exp_avg_sq and step are changed in place by the step: as ordinary (dynamic) inputs
    inductor's CUDA-graph trees skip the graph on every step ("mutated inputs"). They are marked static on every
    call, so the state a resume loads (new tensors) is static too, without a recompile."""
    recorder = recorded
    encoder = TinyEncoder()
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    step = WholeStep(encoder, _square_loss, optimizer)
    images = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        step(images)
    optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # a resume: new state tensors
    step(images)
    assert len(recorder.graphs) == 1  # the loaded state did not recompile the step
    static = recorder.graphs[0]
    state = [tensor for entry in optimizer.state.values() for tensor in entry.values()]
    assert len(state) == 3 * len(step.params)
    assert all(getattr(tensor, "_dynamo_static_input_type", None) for tensor in state)  # the loaded ones too
    assert not static[id(images)]  # a new batch each step: copied in, as it should be
    assert all(is_static for key, is_static in static.items() if key != id(images))  # parameters and state


def test_the_step_is_one_graph_with_foreach_adam_and_no_config_context_per_call(recorded, monkeypatch) -> None:
    """Adam runs as multi-tensor (foreach) kernels inside the graph, and dynamo's and inductor's settings are
    given once (compile options, process settings), not entered as config contexts on every call."""
    entered: list[dict] = []
    original = ConfigModule.patch

    def counting(config, *args, **kwargs):
        entered.append(kwargs)
        return original(config, *args, **kwargs)

    encoder = TinyEncoder()
    step = WholeStep(encoder, _square_loss, torch.optim.Adam(encoder.parameters(), lr=1e-3))
    step(torch.randn(4, 8))  # compiles (dynamo patches its own settings while it traces)
    monkeypatch.setattr(ConfigModule, "patch", counting)
    for _ in range(3):
        step(torch.randn(4, 8))
    assert entered == []
    assert len(recorded.graphs) == 1 and sum(torch._dynamo.utils.counters["graph_break"].values()) == 0
    assert any("_foreach_" in name for name in recorded.operators)
    assert step.compile_mode == "default" and not step.cudagraphs  # no CUDA graphs on a CPU


def test_the_step_gets_cuda_graphs_on_cuda_unless_a_mode_is_set() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_compile_mode(None, cuda) == "reduce-overhead"
    assert resolve_compile_mode(None, cpu) == "default"
    assert resolve_compile_mode("default", cuda) == "default"  # the way to compile without CUDA graphs
    assert compile_options("reduce-overhead") == {"triton.cudagraphs": True, "emulate_precision_casts": True}
    assert compile_options("default") == {"emulate_precision_casts": True}


def _skip(reason: str) -> None:
    """What inductor does when it skips CUDA graphs (`log_cudagraph_skip_and_bump_counter`), by hand on a CPU."""
    torch._inductor.cudagraph_utils.cudagraphs_log.warning(reason)
    torch._dynamo.utils.counters["inductor"]["cudagraph_skips"] += 1


def test_a_cuda_graph_skip_is_a_loud_warning_naming_its_reason(recorded) -> None:
    """Checked after the first compiled steps (warm-up, record, replay), once; injected here, since a CPU has no
    CUDA graphs to skip."""
    encoder = TinyEncoder()
    step = WholeStep(encoder, _square_loss, torch.optim.Adam(encoder.parameters(), lr=1e-3))
    step._skips = CudaGraphSkips()  # as on CUDA with CUDA graphs
    step(torch.randn(4, 8))
    _skip("skipping cudagraphs due to mutated inputs (2 instances)")
    step(torch.randn(4, 8))
    with pytest.warns(UserWarning, match=r"CUDA graphs were skipped 1 time.*mutated inputs \(2 instances\).*"):
        step(torch.randn(4, 8))
    _skip("skipping cudagraphs due to mutated inputs (2 instances)")
    step(torch.randn(4, 8))  # warned once: no check on later calls
    assert step._skips is None


def test_no_cuda_graph_skip_no_warning(recorded, recwarn) -> None:
    quiet = CudaGraphSkips()
    assert quiet.finish() is None
    counted = CudaGraphSkips()
    torch._dynamo.utils.counters["inductor"]["cudagraph_skips"] += 1  # a skip without a logged reason
    with pytest.warns(UserWarning, match="no reason logged.*TORCH_LOGS=cudagraphs.*model.compile_mode=default"):
        assert "skipped 1 time" in counted.finish()


def test_compiled_code_is_kept_in_the_users_cache_folder(monkeypatch, tmp_path) -> None:
    """So that the next job of a sweep loads the compiled step instead of compiling it again; a folder the user
    set (TORCHINDUCTOR_CACHE_DIR) is kept."""
    monkeypatch.delenv(compile_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    encoder = TinyEncoder()
    WholeStep(encoder, _square_loss, torch.optim.Adam(encoder.parameters()), compile=False)
    assert compile_cache.ENV not in os.environ  # nothing compiled, nothing set
    WholeStep(encoder, _square_loss, torch.optim.Adam(encoder.parameters()))
    assert os.environ[compile_cache.ENV] == str(tmp_path / "cache" / "dim-lightning" / "torchinductor")
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "mine"))
    WholeStep(encoder, _square_loss, torch.optim.Adam(encoder.parameters()))
    assert os.environ[compile_cache.ENV] == str(tmp_path / "mine")


def test_a_second_fit_steps_the_new_trainers_optimizer(make_config, monkeypatch) -> None:
    """Each fit makes a new optimizer (configure_optimizers); the whole step must update that one's state (what
    its checkpoints save), not the first fit's."""
    monkeypatch.setattr(module_file, "WholeStep", functools.partial(WholeStep, compile=False))
    _, fast = _pair(make_config, "infonce_all_pairs")
    images = torch.randn(STEPS * 8, 1, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _fit(fast, images)
    _fit(fast, images)
    state = fast.trainer.optimizers[0].state
    assert state and all(int(entry["step"]) == STEPS for entry in state.values())
