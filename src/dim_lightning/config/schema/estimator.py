"""estimator: the MI bound each term maximises, a function of critic scores (conf/estimator/)."""

from dim_lightning.config.checks import number, partial, positive, target
from dim_lightning.config.schema.key import Key

GROUP = "estimator"

KEYS = (
    Key("estimator._target_", target, "the bound (dim_lightning.mi.bounds)"),
    Key("estimator._partial_", partial, "the bound is called on each batch's scores"),
    Key("estimator.tau", positive, "a clipping bound's threshold: scores are clipped to [-tau, tau] (smile)"),
    Key("estimator.ema_rate", number(0, 1, low_open=True), "dv: rate of the moving average in MINE's gradient"),
)
