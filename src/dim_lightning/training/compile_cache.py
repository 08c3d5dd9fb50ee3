"""Where torch.compile keeps what it compiled, so that a second run of the same model (the next job of a sweep,
a resumed run) loads it instead of compiling again (1-2 minutes for the whole step): `$TORCHINDUCTOR_CACHE_DIR`
when the user set it, else `dim-lightning/torchinductor` under the user's cache folder (`$XDG_CACHE_HOME`, else
~/.cache). torch's own default, /tmp/torchinductor_<user>, is per machine and goes with /tmp; a home folder is
kept, and on a cluster it is usually shared by the nodes a sweep's jobs land on. The folder is the user's own, as
torch's default is: inductor loads compiled code from it, so it must not be writable by others."""

from __future__ import annotations

import os
from pathlib import Path

from dim_lightning.utils.user_cache import user_cache_dir

ENV = "TORCHINDUCTOR_CACHE_DIR"


def default_cache_dir() -> Path:
    return user_cache_dir("torchinductor")


def use_persistent_compile_cache() -> str:
    """Set `$TORCHINDUCTOR_CACHE_DIR` for this process unless it is set (inductor sets it itself on first use,
    so this runs before the first compilation); the folder in use."""
    return os.environ.setdefault(ENV, str(default_cache_dir()))
