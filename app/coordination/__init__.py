"""Coordination between gonogo processes sharing one database: leases and fencing
(``docs/architecture.md``, "Replicas and leases")."""
