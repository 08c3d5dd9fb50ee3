"""Train Deep InfoMax: `python train.py [hydra overrides]`, e.g. `python train.py model.beta=1.5 trainer.devices=1`."""

from dim_lightning.train import main

if __name__ == "__main__":
    main()
