"""Training: the LightningModule (`module`), the whole-step fast path (`whole_step`, `step_metrics`,
`host_sync`), the optimizer and speed switches (`optim`, `speed`), the RNG state every checkpoint carries
(`rng_state`), and the early-stopping rule of the small models fitted elsewhere (neural-MI critics, probes)."""
