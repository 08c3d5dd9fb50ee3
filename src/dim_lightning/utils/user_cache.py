"""The per-user cache folder of dim-lightning: `$XDG_CACHE_HOME/dim-lightning`, else ~/.cache/dim-lightning. What is
kept there (compiled code, the pixel baseline's numbers) is recomputed when missing; deleting it is safe."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir(*parts: str) -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "dim-lightning", *parts)
