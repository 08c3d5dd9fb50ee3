"""paths: where a run writes (conf/paths/)."""

from dim_lightning.config.checks import path
from dim_lightning.config.schema.key import Key

GROUP = "paths"

KEYS = (Key("paths.output_dir", path, "the run directory (Hydra's hydra.run.dir / hydra.sweep.dir)"),)
