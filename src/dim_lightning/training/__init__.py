"""Training: the LightningModule (`module`), the whole-step fast path (`whole_step`, `step_metrics`), the
optimizer and speed switches (`optim`, `speed`), and the RNG state every checkpoint carries (`rng_state`)."""
