"""gcache: a learned graph of role agents that pass fused KV caches (see method.py)."""
