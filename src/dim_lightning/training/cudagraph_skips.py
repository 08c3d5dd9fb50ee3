"""A CUDA-graph skip made loud. When inductor cannot capture a compiled graph as a CUDA graph (an input the graph
changes in place that is not static, a CPU op, a re-record limit, ...), its CUDA-graph trees fall back to plain
kernel launches on every step and say so only in a counter (`torch._dynamo.utils.counters["inductor"]
["cudagraph_skips"]`) and one line of torch's log, easy to miss in a training log. The fast path then loses most
of what CUDA graphs buy (unmeasured here; estimated at about half its speed). `CudaGraphSkips` collects the
reasons from that log line over the first compiled steps and warns once, naming them."""

from __future__ import annotations

import logging

from pytorch_lightning.utilities import rank_zero_warn
from torch._dynamo.utils import counters
from torch._inductor.cudagraph_utils import cudagraphs_log


def skip_count() -> int:
    """CUDA-graph skips in this process so far (inductor's counter)."""
    return int(counters["inductor"]["cudagraph_skips"])


class CudaGraphSkips(logging.Handler):
    """From construction to `finish()`: the skips counted and the reasons inductor logged (its `cudagraphs` log,
    a warning by default); `finish()` warns once when there were any and returns the warning (None if none)."""

    def __init__(self) -> None:
        super().__init__()
        self.before = skip_count()
        self.reasons: list[str] = []
        cudagraphs_log.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.reasons.append(record.getMessage())

    def finish(self) -> str | None:
        cudagraphs_log.removeHandler(self)
        skipped = skip_count() - self.before
        if skipped <= 0:
            return None
        reasons = "; ".join(dict.fromkeys(self.reasons)) or "no reason logged (run with TORCH_LOGS=cudagraphs)"
        message = (
            f"model.whole_step=true: CUDA graphs were skipped {skipped} time(s) in the first compiled steps: "
            f"{reasons}. Every step now launches its kernels one by one (the fast path's main gain is lost). "
            "Remove what the reason names, or set model.compile_mode=default to compile without CUDA graphs"
        )
        rank_zero_warn(message)
        return message
