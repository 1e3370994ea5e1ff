"""Load and overhead measurements: `python -m bench.run` (see bench/README.md)."""
