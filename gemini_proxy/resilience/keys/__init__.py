"""Upstream keys: read from their sources (sources.py), pooled with health (pool.py), waited for (gate.py)."""
