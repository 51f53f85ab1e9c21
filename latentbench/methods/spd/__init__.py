"""``spd``: speculative decoding with a mismatch judge (see docs/spd.md)."""
