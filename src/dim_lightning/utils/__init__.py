"""Small helpers that every layer may use and that use no other part of the package: atomic writes, usable
cores, phase timing and progress, early stopping."""
