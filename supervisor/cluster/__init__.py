"""Many hosts, one fleet: placement by rendezvous hashing, ownership by PostgreSQL leases,
bots handed over with their whole directory (docs/cluster.md)."""
