"""A run's id: 32 hexadecimal digits (uuid4), written in metrics.json and every checkpoint (`FinalEvaluation`), so
a resumed run keeps it and a reader can tell which run wrote a file."""

from __future__ import annotations

import re
from typing import Any

RUN_ID_KEY = "run_id"
RUN_ID = re.compile(r"[0-9a-f]{32}")


def is_run_id(value: Any) -> bool:
    """Whether `value` is a run id as `FinalEvaluation` writes it (a str of 32 hexadecimal digits)."""
    return type(value) is str and RUN_ID.fullmatch(value) is not None
