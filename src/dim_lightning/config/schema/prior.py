"""prior: prior matching of the code, weighted by model.gamma (conf/prior/; none: no prior)."""

from dim_lightning.config.checks import documented, integer, list_of, number, positive, target
from dim_lightning.config.schema.key import Key

GROUP = "prior"

KEYS = (
    Key("prior", documented("a prior config, or null (prior=none)"), "null: no prior matching (model.gamma must be 0)"),
    Key("prior._target_", target, "the prior's loss module (KL to N(0, I), or the paper's adversarial one)"),
    Key("prior.code_dim", integer(1, 4096), "adversarial: the code size the discriminator reads (model.z_dim)"),
    Key("prior.hidden", list_of(integer(1, 8192), allow_empty=True), "adversarial: the discriminator's hidden layers"),
    Key("prior.lr", positive, "adversarial: the discriminator's Adam learning rate"),
    Key(
        "prior.betas",
        list_of(number(0, 1, high_open=True)),
        "adversarial: the discriminator's Adam betas (default: model.optimizer.betas)",
    ),
)
