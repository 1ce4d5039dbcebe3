"""The HTTP side of botvisor: a REST API, a live event stream and signed webhooks.

A separate process (``botvisor gateway -c FILE``) and a client of the public protocol only:
the tap for events, the control socket for actions (protocol/client.py). It never imports
worker/ or botvisor/ (tests/test_layering.py).
"""
