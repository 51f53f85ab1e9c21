"""Evaluator, metrics, leaderboard and report rendering."""
