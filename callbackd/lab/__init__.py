"""The lab: a real Asterisk and a throwaway Postgres for tests, the demo and benchmarks."""
