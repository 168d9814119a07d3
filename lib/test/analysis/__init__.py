"""Benchmark metrics (LaSOT-toolkit OPE, got10k toolkit), tables and plots."""
