"""Benchmarks: runnable scripts (``python -m bench.<name>``), each on its own throwaway databases."""
