"""eval: the evaluation of the frozen encoder at the end of training and in `python -m dim_lightning.evaluate`
(conf/eval/): linear and MLP probes, kNN, retrieval, at the feature places the evaluation defines."""

from dim_lightning.config.checks import boolean, containing, integer, list_of, one_of, optional, positive
from dim_lightning.config.schema.key import Key
from dim_lightning.config.schema.registries import FEATURE_PLACES

GROUP = "eval"

KEYS = (
    Key("eval.final", boolean, "run the suite on the final weights at the end of training"),
    Key("eval.random_init_baseline", boolean, "the same probes on an untrained encoder of the same shape"),
    Key(
        "eval.suite.places",
        containing(list_of(one_of(FEATURE_PLACES)), "Y", "the code: the headline numbers"),
        "feature places: conv (local map), fc (layer before the code), Y (the code)",
    ),
    Key("eval.suite.mlp", boolean, "the paper's MLP probe (200 hidden, BN, dropout) besides the linear one"),
    Key("eval.suite.knn_k", integer(1), "neighbours of the weighted kNN"),
    Key("eval.suite.knn_temperature", positive, "temperature of the kNN's weights"),
    Key("eval.suite.precision_k", integer(1), "retrieval precision@k"),
    Key("eval.suite.retrieval", boolean, "the pictures retrieval_l2.png / retrieval_cos.png (p@k is always scored)"),
    Key("eval.suite.export_features", boolean, "features.npz: codes, labels, split"),
    Key("eval.suite.tsne", boolean, "tsne.png coloured by class"),
    Key(
        "eval.suite.max_train_images",
        optional(integer(2)),
        "null: fit on every train image; N: on a fixed, seeded, class-stratified subset of N",
    ),
)
