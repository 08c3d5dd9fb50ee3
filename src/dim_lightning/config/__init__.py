"""Config keys, described once, and what a config becomes: `schema/` holds one module per config group (every
key's type, valid values and meaning); `validation` checks a composed config against it, `docs` writes
docs/config.md and the README's table from it; `builders` turns a checked config into the run's objects;
`resolvers` are the config tree's `${dim.*}` resolvers.
`CONF_DIR` is the config tree itself."""

from pathlib import Path


def _conf_dir() -> Path:
    """The config tree: shipped inside an installed package (`dim_lightning/conf`), else a clone's conf/ (also
    what an editable install sees)."""
    packaged = Path(__file__).resolve().parents[1] / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[3] / "conf"


CONF_DIR = _conf_dir()
