"""logger: where metrics go (conf/logger/): csv files, Weights & Biases, TensorBoard, or none (logger=none: null)."""

from dim_lightning.config.checks import boolean, documented, list_of, optional, path, target, text
from dim_lightning.config.schema.key import Key

GROUP = "logger"

KEYS = (
    Key("logger", documented("logger configs by name, or null (logger=none)"), "null: log nothing"),
    Key("logger.csv._target_", target, "Lightning's CSVLogger"),
    Key("logger.csv.save_dir", path, "the folder holding csv/ (the run dir)"),
    Key("logger.csv.name", text, "the csv logger's subfolder"),
    Key("logger.tensorboard._target_", target, "builds Lightning's TensorBoardLogger (needs tensorboardX)"),
    Key("logger.tensorboard.save_dir", path, "the folder holding tensorboard/ (the run dir)"),
    Key("logger.tensorboard.name", text, "the TensorBoard logger's subfolder"),
    Key("logger.tensorboard.version", text, "a version subfolder (empty: none; a resumed run appends)"),
    Key("logger.tensorboard.default_hp_metric", boolean, "log Lightning's placeholder hp_metric"),
    Key("logger.wandb._target_", target, "builds the W&B logger (offline unless logged in or WANDB_MODE is set)"),
    Key("logger.wandb.offline", optional(boolean), "null: offline unless you are logged in or WANDB_MODE is set"),
    Key("logger.wandb.project", text, "the W&B project"),
    Key("logger.wandb.name", optional(text), "the W&B run name (null: W&B picks one)"),
    Key("logger.wandb.group", optional(text), "the W&B group (e.g. a sweep's name)"),
    Key("logger.wandb.tags", list_of(text, allow_empty=True), "W&B tags"),
    Key("logger.wandb.save_dir", path, "where W&B files go (the run dir)"),
    Key("logger.wandb.log_model", boolean, "upload checkpoints to W&B"),
    Key("logger.wandb.id", optional(text), "a W&B run id to continue (filled from the checkpoint on resume)"),
    Key("logger.wandb.resume_from", path, "the checkpoint whose W&B run id is continued (ckpt_path)"),
    Key("logger.wandb.trust_checkpoint", boolean, "read that checkpoint with full unpickling (trust_checkpoint)"),
)
