"""What a request leaves behind: its record (record.py), its cost, metrics and log line (telemetry.py,
metrics.py, accesslog.py), and the offline report over those lines (report.py)."""
