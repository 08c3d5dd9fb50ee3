"""`model.whole_step=true`: one training step (forward, loss, gradients, gradient all-reduce under DDP, Adam
update) as one function, compiled as one graph with `torch.compile(fullgraph=True)` (on CUDA, unless
`model.compile_mode` says otherwise, with CUDA graphs: one replay per step, a skip warned about loudly).

Why: a DIM step is small (the blog recipe: ~47 GFLOP, under 1 ms of math on an H100), so on a GPU it is bound by
Python and kernel launches, and by anything that makes the host wait for the device. Here the step is one graph
that returns its metrics as one device vector (the module accumulates them on the device and logs them every
`trainer.log_every_n_steps` steps), so no step reads a value on the host. Results equal the default path's up to
float rounding (tests/test_whole_step.py); what it cannot be combined with (gradient clipping, accumulation,
skipped batches, a gradient scaler, prior=adversarial) is refused by config validation
(`dim_lightning.config.validation.optimizer_problems`) before anything is built."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch._inductor import list_mode_options
from torch.distributed import _functional_collectives as collectives
from torch.optim.adam import adam as functional_adam
from torch.optim.optimizer import _get_scalar_dtype

from dim_lightning.errors import require
from dim_lightning.mi.negatives import Gather, single_device
from dim_lightning.models.encoders import EncoderOutput
from dim_lightning.training.compile_cache import use_persistent_compile_cache
from dim_lightning.training.cudagraph_skips import CudaGraphSkips

Objective = Callable[[EncoderOutput, Gather], dict[str, Tensor]]
SKIP_CHECK_CALLS = 3  # CUDA-graph trees: the 1st call warms up, the 2nd records, the 3rd replays


def resolve_compile_mode(mode: str | None, device: torch.device) -> str:
    """`model.compile_mode` for the step: as set, else CUDA graphs on CUDA (`reduce-overhead`: the step is
    launch-bound there) and inductor's default elsewhere."""
    if mode is not None:
        return mode
    return "reduce-overhead" if device.type == "cuda" else "default"


def compile_options(mode: str) -> dict[str, bool]:
    """inductor's options for the step, given once to `torch.compile` (not a config context entered per call):
    the mode's own, and `emulate_precision_casts`: under bf16/fp16 autocast, inductor computes fused
    low-precision ops in float32 and recomputes forward values inside the backward without eager's rounding to
    bf16; the global max pool's gradient (`amax`: where the input equals the saved, rounded max, divided by how
    many do) then finds no maximum in a map of negative values and divides by 0: NaN weights after one step."""
    return {**list_mode_options(mode), "emulate_precision_casts": True}


def use_dynamo_settings() -> None:
    """Dynamo's settings for tracing the step, set for the process once (dynamo reads them whenever it traces,
    which a recompile can make any call do; a config context entered per call cost about 0.1 ms a step):
    `trace_autograd_ops` traces `torch.autograd.grad` into the graph; `optimize_ddp=False`: the step runs inside
    DDP's forward, where dynamo would split the graph at DDP's gradient buckets (for overlapping DDP's own
    all-reduce, which the whole step replaces), and the split traced autograd.grad fails ("backward through the
    graph a second time"). Nothing else of a whole-step run is compiled (`Speedups.apply`)."""
    torch._dynamo.config.trace_autograd_ops = True
    torch._dynamo.config.optimize_ddp = False


def gather_across_ranks(features: Tensor) -> tuple[Tensor, int]:
    """Every rank's features with their gradient (the negatives of the global batch), traceable by dynamo."""
    gathered = collectives.all_gather_tensor_autograd(features.contiguous(), 0, dist.group.WORLD)
    return gathered, dist.get_rank() * features.shape[0]


def _average_across_ranks(grads: list[Tensor]) -> list[Tensor]:
    """One all-reduce of all gradients, flattened into one buffer, then averaged (DDP's result)."""
    flat = torch.cat([g.reshape(-1) for g in grads])
    flat = collectives.all_reduce(flat, "sum", dist.group.WORLD) / dist.get_world_size()
    return [chunk.view_as(g) for chunk, g in zip(flat.split([g.numel() for g in grads]), grads, strict=True)]


class WholeStep:
    """Runs one training step of `encoder` + `objective` and updates `optimizer`'s parameters in place.

    `__call__(images)` returns (metrics, embedding): `metrics` is one detached vector (float32, or the loss's
    dtype if wider) of the values of the objective's dict, in its order; `embedding` the code's mean (both
    copies, safe to keep after the next step even under CUDA graphs).

    What makes it one graph: gradients by `torch.autograd.grad` (traced with dynamo's `trace_autograd_ops`), not
    `.backward()` into `.grad`; the update by the functional Adam of `torch.optim.adam` on the optimizer's own
    state (so checkpoints and resume are those of the default path: the same `state_dict`), not
    `optimizer.step()`, which breaks the graph on purpose; under DDP the gradients averaged with one all-reduce
    of a flat buffer and the negatives gathered by a traceable collective
    (`torch.distributed._functional_collectives`)."""

    def __init__(
        self,
        encoder: nn.Module,
        objective: Objective,
        optimizer: torch.optim.Optimizer,
        compile: bool = True,
        compile_mode: str | None = None,
    ) -> None:
        # The optimizer object itself: any model.optimizer._target_ (or +model.optimizer.amsgrad=true) can make it
        # something the functional Adam below would silently not run, so it is checked here, where it is seen.
        require(
            type(optimizer) is torch.optim.Adam and len(optimizer.param_groups) == 1,
            "model.whole_step=true runs torch.optim.Adam with one parameter group; set model.whole_step=false for "
            "this optimizer",
        )
        group = optimizer.param_groups[0]
        require(not group["amsgrad"] and not group["maximize"], "model.whole_step=true needs plain Adam")
        self.encoder, self.objective, self.optimizer = encoder, objective, optimizer
        self.params = [p for p in group["params"] if p.requires_grad]
        device = self.params[0].device
        self.compile_mode = resolve_compile_mode(compile_mode, device)
        options = compile_options(self.compile_mode)
        self.cudagraphs = compile and bool(options.get("triton.cudagraphs"))
        self._step = None
        if compile:
            use_dynamo_settings()
            use_persistent_compile_cache()
            self._step = torch.compile(self._eager_step, fullgraph=True, options=options)
        self._skips = CudaGraphSkips() if self.cudagraphs and device.type == "cuda" else None
        self._calls_before_skip_check = SKIP_CHECK_CALLS
        self._marked: list[Tensor] = []  # the state tensors marked static so far

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        state = self._optimizer_state()
        if self._step is None:
            return self._eager_step(images, *state)
        self._mark_static(list(itertools.chain.from_iterable(state)))
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        metrics, embedding = self._step(images, *state)
        if self._skips is not None:
            self._check_skips()
        return metrics.clone(), embedding.clone()  # outputs of a CUDA graph are overwritten by the next replay

    def _mark_static(self, state: list[Tensor]) -> None:
        """The step changes Adam's state in place: as ordinary (dynamic) inputs, inductor's CUDA-graph trees would
        skip the graph on every step ("mutated inputs"). Static inputs (fixed address, not copied into the graph's
        own buffers), checked on every call, so that state a resume loads (new tensors) is covered too without a
        recompile (unguarded); marked again only when a tensor is new (marking all costs ~80 us a step)."""
        if len(state) == len(self._marked) and all(a is b for a, b in zip(state, self._marked, strict=True)):
            return
        for tensor in state:
            torch._dynamo.mark_static_address(tensor)
        self._marked = state

    def _check_skips(self) -> None:
        """After the first compiled steps (warm-up, recording, first replay): warn once if CUDA graphs were
        skipped (`CudaGraphSkips`)."""
        self._calls_before_skip_check -= 1
        if self._calls_before_skip_check == 0:
            self._skips.finish()
            self._skips = None

    def _optimizer_state(self) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Adam's state tensors, created as `Adam` itself creates them (so `state_dict` is the same format)."""
        group = self.optimizer.param_groups[0]
        moments, squares, steps = [], [], []
        for p in self.params:
            state = self.optimizer.state[p]
            if not state:
                on_device = group["capturable"] or group["fused"]
                dtype = _get_scalar_dtype(is_fused=group["fused"])
                state["step"] = torch.zeros((), dtype=dtype, device=p.device if on_device else "cpu")
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            moments.append(state["exp_avg"])
            squares.append(state["exp_avg_sq"])
            steps.append(state["step"])
        return moments, squares, steps

    def _eager_step(
        self, images: Tensor, moments: list[Tensor], squares: list[Tensor], steps: list[Tensor]
    ) -> tuple[Tensor, Tensor]:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        out = self.encoder(images)
        logs = self.objective(out, gather_across_ranks if distributed else single_device)
        grads = torch.autograd.grad(logs["loss"], self.params, allow_unused=True, materialize_grads=True)
        if distributed:
            grads = _average_across_ranks(list(grads))
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        with torch.no_grad():
            functional_adam(
                self.params,
                list(grads),
                moments,
                squares,
                [],
                steps,
                foreach=True,  # a few multi-tensor kernels, not several per parameter
                # capturable (bias corrections from the step tensors, no host float) is what traces in one graph
                capturable=group["capturable"] or torch.compiler.is_compiling(),
                fused=group["fused"],
                amsgrad=False,
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=False,
                decoupled_weight_decay=group["decoupled_weight_decay"],
            )
        dtype = torch.promote_types(logs["loss"].dtype, torch.float32)
        metrics = torch.stack([value.detach().to(dtype).reshape(()) for value in logs.values()])
        return metrics, out.Y.detach()
