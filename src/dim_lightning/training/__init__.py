"""Fitting helpers shared by the parts that train small models (neural-MI critics, evaluation probes)."""
