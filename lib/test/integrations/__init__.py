"""Adapters that let outside evaluation toolkits run this project's trackers: the got10k toolkit
(`got10k_toolkit.py`) and the VOT toolkit through TraX (`vot_trax.py`, set up by tracking/vot_setup.py)."""
