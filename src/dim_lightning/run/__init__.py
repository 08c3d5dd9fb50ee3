"""Run infrastructure: checkpoints (and why they are safe to load), distributed helpers, log routing and W&B run
ids."""
