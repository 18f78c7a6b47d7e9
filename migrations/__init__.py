"""Alembic migrations for gonogo's database (SPEC §8)."""
