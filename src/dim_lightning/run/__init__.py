"""Run infrastructure: checkpoints (and why they are safe to load), resume, distributed helpers, log routing, W&B run
ids, atomic writes and the multirun summary."""
