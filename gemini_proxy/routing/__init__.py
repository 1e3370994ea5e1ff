"""Who may send what where: alias / task -> ordered targets (resolve.py, pure), teams' keys and
allow-lists (teams.py), data residency (residency.py), team rpm and daily budgets (meter.py)."""
