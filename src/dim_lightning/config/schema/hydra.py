"""hydra: the keys of Hydra's config that are dim-lightning's: where a run writes (a run dir holding a symlink is
refused before Hydra writes into it) and its own Hydra callbacks (conf/hydra/). Every other `hydra.*` key is
Hydra's or a plugin's, set as usual and checked by them:
[Hydra's config](https://hydra.cc/docs/configure_hydra/intro/) (e.g. `hydra.job.chdir`:
[the job](https://hydra.cc/docs/configure_hydra/job/)),
[the submitit launchers](https://hydra.cc/docs/plugins/submitit_launcher/)
(`hydra/launcher=submitit_slurm|submitit_local`, e.g. `hydra.launcher.timeout_min`) and
[the Optuna sweeper](https://hydra.cc/docs/plugins/optuna_sweeper/) (`hparams_search=optuna`, e.g.
`hydra.sweeper.n_trials`; [its samplers](https://optuna.readthedocs.io/en/stable/reference/samplers/index.html))."""

from dim_lightning.config.checks import documented
from dim_lightning.config.schema.key import Key

GROUP = "hydra"
TEXT = documented("a string")

KEYS = (
    Key("hydra.run.dir", TEXT, "a run's directory (outputs/<task_name>/runs/<time>)"),
    Key("hydra.sweep.dir", TEXT, "a multirun's directory (outputs/<task_name>/multiruns/<time>)"),
    Key("hydra.callbacks.validate_first._target_", TEXT, "refuses a config that fails validation, before Hydra writes"),
    Key("hydra.callbacks.run_dir_check._target_", TEXT, "refuses a run dir holding a symlink, before Hydra writes"),
    Key("hydra.callbacks.multirun_summary._target_", TEXT, "writes summary.csv / summary.md after a multirun"),
    Key("hydra.callbacks.multirun_summary.metric", TEXT, "the metric the summary sorts by (optimized_metric)"),
)
