"""Benchmarks: botvisor against circus and supervisord, and its event path against a bare relay.

Run ``python -m bench``; see bench/README.md.
"""
