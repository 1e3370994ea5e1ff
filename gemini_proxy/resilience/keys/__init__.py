"""Upstream keys: read from their sources (sources.py), each key's health (health.py), pooled (pool.py),
waited for (gate.py)."""
