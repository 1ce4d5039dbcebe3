"""The chaos soak (issue 14): ``python -m bench.chaos [--duration S] [--seed N]``.

A real supervisor with 30 simulated bots, a seeded driver doing what months do to a fleet,
then end-of-run checks printed as a table with the seed, then a SIGKILL of the supervisor mid-
chaos and a recovery by a new one on the same directories. Exit 0 when every check passes.
"""
