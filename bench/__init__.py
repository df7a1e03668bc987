"""Performance bench for the doc type migration: see bench/run.py."""
