# cython: language_level=3
"""UDP receive hot path (filled in by the ingest work)."""
