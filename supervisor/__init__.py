"""The botvisor supervisor: spawns one worker per bot and keeps each alive.

Where to look: the restart policy is restart.py, liveness health.py, container states
protocol/states.py, one bot's life container.py, the loop arbiter.py, spawning process.py.
"""
