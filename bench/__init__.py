"""Benchmarks: runnable scripts (``python -m bench.<name>``), each on throwaway databases."""
