"""Evaluation of representations: frozen-feature probes, kNN, retrieval pictures, callbacks."""
