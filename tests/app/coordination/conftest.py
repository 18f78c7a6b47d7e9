"""The throwaway PostgreSQL cluster the paused-database test borrows, by name."""

from tests.app.test_database_faults import cluster as pg_cluster  # noqa: F401
