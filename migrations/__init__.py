"""Alembic migrations for gonogo's database."""
