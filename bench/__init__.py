"""Benchmarks: they print figures; speed targets live here, never in timed unit tests."""
