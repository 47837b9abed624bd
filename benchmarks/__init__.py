"""Benchmark harness: the real worker pipeline against PostgreSQL and Redis (`./dev bench`)."""
