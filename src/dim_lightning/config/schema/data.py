"""data: the data set and how batches are made (conf/data/; one LightningDataModule per option). Keys that an
option does not have (e.g. data.root for digits) are absent from its config."""

from dim_lightning.config.checks import boolean, fraction, integer, optional, path, seed, target
from dim_lightning.config.schema.key import Key

GROUP = "data"

KEYS = (
    Key("data._target_", target, "the LightningDataModule class of the chosen data set"),
    Key("data.root", path, "the folder of a data set read from disk"),
    Key("data.image_size", integer(1, 256), "images are resized to image_size x image_size before the encoder"),
    Key(
        "data.batch_size",
        integer(2, 65536),
        "images per training step on each device (DDP: the global batch is batch_size x devices)",
    ),
    Key("data.shuffle_seed", seed, "the training order of epoch e is a pure function of (shuffle_seed, e)"),
    Key(
        "data.num_workers",
        optional(integer(0, 64)),
        "loader processes; null: min(4, the CPU cores this process may use)",
    ),
    Key("data.on_device", boolean, "true: the uint8 train split lives on the accelerator (no loader workers)"),
    Key("data.crop_padding", integer(0, 256), "random-crop augmentation: pad by this many pixels, crop back (0: off)"),
    Key("data.flip", boolean, "random horizontal flips"),
    Key("data.test_fraction", fraction, "the held-out test split's share of all images (reported as */test_acc)"),
    Key("data.val_fraction", fraction, "the model-selection split carved from train (*/val_acc, optimized_metric)"),
    Key("data.split_seed", seed, "seeds the fixed, stratified train/val/test split"),
    Key("data.cache_dir", path, "where the decoded uint8 cache is kept (null: <root>/.dim_cache)"),
    Key("data.skip_bad", boolean, "true: leave unreadable images out (one warning lists them); false: stop on one"),
    Key("data.follow_links", boolean, "true: read data files and folders that are symbolic links (false: refused)"),
    Key("data.num_train", integer(2, 1_000_000), "synthetic: number of random training images"),
    Key("data.num_val", integer(1, 1_000_000), "synthetic: number of random validation images"),
    Key("data.num_classes", integer(2, 100_000), "synthetic: number of random labels"),
    Key("data.channels", integer(1, 16), "synthetic: image channels"),
    Key("data.seed", seed, "synthetic: seeds the random images and labels"),
)
