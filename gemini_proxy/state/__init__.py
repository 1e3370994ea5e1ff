"""Where counters and health live: in-process buckets (bucket.py), or shared by replicas through a
backend (backend.py: the protocol and windows; redis.py) with key/circuit health synced (sync.py)."""
