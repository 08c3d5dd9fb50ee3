"""hydra: run directories, the multirun summary, launchers (hydra/launcher=submitit_slurm|submitit_local) and
sweepers (hparams_search=optuna) (conf/hydra/, conf/hparams_search/). Hydra and its plugins check these values
themselves when they read them (before a run starts), so they are described here, not checked again."""

from dim_lightning.config.checks import documented
from dim_lightning.config.schema.key import Key

GROUP = "hydra"
INT, TEXT, BOOL = documented("an integer"), documented("a string"), documented("true or false")
OPT_INT, OPT_TEXT = documented("null or an integer"), documented("null or a string")
SLURM = "submitit_slurm: "
TPE = "optuna: TPE sampler's "

_LAUNCHER = (
    ("_target_", documented("a launcher class"), "the launcher (basic: jobs one after another in this process)"),
    ("submitit_folder", TEXT, "submitit: where job scripts and logs go"),
    ("timeout_min", INT, "submitit: the job's time limit in minutes"),
    ("cpus_per_task", OPT_INT, "submitit: CPU cores per task (per GPU)"),
    ("gpus_per_node", OPT_INT, "submitit: GPUs per node (trainer.devices)"),
    ("tasks_per_node", INT, "submitit: processes per node, one per GPU (trainer.devices)"),
    ("mem_gb", OPT_INT, "submitit: memory per node in GB"),
    ("nodes", INT, "submitit: nodes per job (trainer.num_nodes)"),
    ("name", TEXT, "submitit: the job name"),
    ("stderr_to_stdout", BOOL, "submitit: one log file instead of two"),
    ("partition", OPT_TEXT, SLURM + "the partition"),
    ("qos", OPT_TEXT, SLURM + "the quality of service"),
    ("comment", OPT_TEXT, SLURM + "the job comment"),
    ("constraint", OPT_TEXT, SLURM + "node features required"),
    ("exclude", OPT_TEXT, SLURM + "nodes to avoid"),
    ("gres", OPT_TEXT, SLURM + "generic resources (e.g. gpu:4)"),
    ("cpus_per_gpu", OPT_INT, SLURM + "CPU cores per GPU"),
    ("gpus_per_task", OPT_INT, SLURM + "GPUs per task"),
    ("mem_per_gpu", OPT_TEXT, SLURM + "memory per GPU"),
    ("mem_per_cpu", OPT_TEXT, SLURM + "memory per CPU core"),
    ("account", OPT_TEXT, SLURM + "the account charged"),
    ("signal_delay_s", INT, SLURM + "SIGUSR2 this many seconds before the time limit (checkpoint, requeue)"),
    ("max_num_timeout", INT, SLURM + "time-limit requeues (each resumes); preemptions are not counted"),
    ("additional_parameters", documented("a mapping"), SLURM + "any other sbatch parameters"),
    ("array_parallelism", INT, SLURM + "jobs of one sweep running at once"),
    ("setup", documented("null or a list of shell lines"), SLURM + "shell lines run before the job"),
)
_SAMPLER = (
    ("_target_", documented("an Optuna sampler class"), "optuna: the sampler"),
    ("seed", OPT_INT, "optuna: the sampler's seed"),
    ("n_startup_trials", INT, "optuna: random trials before TPE models the results"),
    ("consider_prior", BOOL, TPE + "consider_prior"),
    ("prior_weight", documented("a number"), TPE + "prior_weight"),
    ("consider_magic_clip", BOOL, TPE + "consider_magic_clip"),
    ("consider_endpoints", BOOL, TPE + "consider_endpoints"),
    ("n_ei_candidates", INT, TPE + "candidates scored per trial"),
    ("multivariate", BOOL, TPE + "multivariate TPE"),
    ("warn_independent_sampling", BOOL, TPE + "warn when a parameter is sampled independently"),
)
_SWEEPER = (
    ("_target_", documented("a sweeper class"), "the sweeper (basic: the grid of -m values)"),
    ("max_batch_size", OPT_INT, "basic: jobs launched per batch"),
    ("direction", documented("maximize or minimize"), "optuna: optimized_metric is maximised"),
    ("storage", OPT_TEXT, "optuna: e.g. sqlite:///optuna.db to share a study between machines"),
    ("study_name", OPT_TEXT, "optuna: the study's name"),
    ("n_trials", INT, "optuna: trials in all"),
    ("n_jobs", INT, "optuna: trials at once"),
    ("max_failure_rate", documented("a number in [0, 1]"), "optuna: the share of failed trials tolerated"),
    ("search_space", documented("null or a mapping"), "optuna: search space (legacy form; use params)"),
    ("custom_search_space", OPT_TEXT, "optuna: a function defining the search space"),
)

KEYS = (
    Key("hydra.run.dir", TEXT, "a run's directory (outputs/<task_name>/runs/<time>)"),
    Key("hydra.sweep.dir", TEXT, "a multirun's directory (outputs/<task_name>/multiruns/<time>)"),
    Key("hydra.sweep.subdir", TEXT, "each job's folder inside the sweep dir (its job number)"),
    Key("hydra.job.chdir", BOOL, "false: the program stays in the directory it was started from"),
    Key("hydra.mode", documented("null, RUN or MULTIRUN"), "MULTIRUN: sweep without -m (hparams_search=optuna)"),
    Key("hydra.callbacks.run_dir_check._target_", TEXT, "refuses a run dir holding a symlink, before Hydra writes"),
    Key("hydra.callbacks.multirun_summary._target_", TEXT, "writes summary.csv / summary.md after a multirun"),
    Key("hydra.callbacks.multirun_summary.metric", TEXT, "the metric the summary sorts by (optimized_metric)"),
    *(Key(f"hydra.launcher.{name}", check, meaning) for name, check, meaning in _LAUNCHER),
    *(Key(f"hydra.sweeper.sampler.{name}", check, meaning) for name, check, meaning in _SAMPLER),
    *(Key(f"hydra.sweeper.{name}", check, meaning) for name, check, meaning in _SWEEPER),
    Key("hydra.sweeper.params", documented("a mapping key: search space"), "the swept keys and values", open=True),
)
