"""The botvisor supervisor: spawns one worker per bot and keeps each alive.

Where to look: the restart policy is restart.py, liveness health.py, container states
protocol/states.py, one bot's life container.py (fed by intake.py), the loop arbiter.py (worker
traffic relay.py, the fleet-wide acts runtime.py), spawning process.py.
"""
