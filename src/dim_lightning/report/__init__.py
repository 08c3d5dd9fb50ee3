"""`dim-report DIR`: plots and a Markdown report of a sweep or a run, from its files alone (no W&B server); the
multirun summary a sweep writes when it ends (`sweep_summary`)."""
