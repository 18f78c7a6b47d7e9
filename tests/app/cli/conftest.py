"""Fixtures the ``gonogo serve`` trust runs borrow from other folders, by name: a real
Prometheus scraping a broken canary beside healthy versions, and a throwaway PostgreSQL
cluster a test may stop and freeze."""

from tests.app.test_database_faults import cluster as pg_cluster  # noqa: F401
from tests.probes.test_quoting_prometheus_real import prometheus as real_prometheus  # noqa: F401
