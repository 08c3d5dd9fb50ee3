"""debug: drills and diagnostics (conf/debug/): fast (one batch), inject_nan, preempt, profile."""

from dim_lightning.config.checks import boolean, integer, one_of, optional, path, target, text
from dim_lightning.config.schema.key import Key
from dim_lightning.config.schema.registries import SIGNALS

GROUP = "debug"
PROFILE = "trainer.profiler"

KEYS = (
    Key("callbacks.inject_nan._target_", target, "inject_nan: the fault-drill callback"),
    Key("callbacks.inject_nan.step", integer(0), "inject_nan: the loss becomes NaN at this batch (0-based, run-wide)"),
    Key(
        "callbacks.inject_nan.term",
        optional(one_of(["local", "global"])),
        "inject_nan: null poisons the batch's images, local|global only that MI term",
    ),
    Key("callbacks.preempt._target_", target, "preempt: the preemption-drill callback"),
    Key("callbacks.preempt.step", integer(0), "preempt: the run signals itself at the end of this batch"),
    Key("callbacks.preempt.signal", one_of(SIGNALS), "preempt: the signal sent (those the run stops cleanly on)"),
    Key(f"{PROFILE}._target_", target, "profile: the PyTorch profiler"),
    Key(f"{PROFILE}.dirpath", path, "profile: where the trace goes (<run dir>/profile)"),
    Key(f"{PROFILE}.filename", text, "profile: the trace's file name"),
    Key(f"{PROFILE}.export_to_chrome", boolean, "profile: a Chrome/Perfetto trace"),
    Key(f"{PROFILE}.schedule._target_", target, "profile: torch.profiler.schedule"),
    Key(f"{PROFILE}.schedule.wait", integer(0), "profile: steps skipped first"),
    Key(f"{PROFILE}.schedule.warmup", integer(0), "profile: warm-up steps (not recorded)"),
    Key(f"{PROFILE}.schedule.active", integer(1), "profile: steps recorded"),
    Key(f"{PROFILE}.schedule.repeat", integer(0), "profile: cycles (0: repeat until training ends)"),
)
