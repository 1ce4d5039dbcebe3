"""Signed webhooks with a durable outbox (docs/webhooks.md).

outbox.py stores every delivery in SQLite before it is attempted; dispatcher.py runs one
lane per (endpoint, bot) so a bot's events reach an endpoint in order and a slow endpoint
delays nobody else; signing.py is the signature a receiver verifies.
"""
