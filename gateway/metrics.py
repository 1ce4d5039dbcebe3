"""The gateway's Prometheus metrics (``GET /metrics``), named like the supervisor's.

Counters and the latency histogram are counted live (this process has no loop it must keep
free of them, unlike the supervisor); queue depth and the oldest undelivered age are read
from the outbox at scrape time, so they are exact whatever the CLI did in between.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: delivery latency buckets, seconds: event on the tap to 2xx from the receiver
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.deliveries = Counter("botvisor_webhook_deliveries", "Webhook deliveries by final outcome "
                                  "(delivered, dead, dropped)", ["endpoint", "outcome"], registry=registry)
        self.attempts = Counter("botvisor_webhook_attempts", "Webhook delivery attempts by result "
                                "(2xx, 4xx, 5xx, timeout, error)", ["endpoint", "result"], registry=registry)
        self.latency = Histogram("botvisor_webhook_delivery_latency_seconds",
                                 "From the event's timestamp to the receiver's 2xx", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.queue_depth = Gauge("botvisor_webhook_queue_depth", "Deliveries waiting (pending) per endpoint",
                                 ["endpoint"], registry=registry)
        self.dead_letters = Gauge("botvisor_webhook_dead_letters", "Deliveries in the dead letters per endpoint",
                                  ["endpoint"], registry=registry)
        self.oldest = Gauge("botvisor_webhook_oldest_undelivered_age_seconds",
                            "Age of the oldest pending delivery per endpoint (0 when none)", ["endpoint"],
                            registry=registry)
        self.paused = Gauge("botvisor_webhook_paused", "1 while the endpoint is paused", ["endpoint"],
                            registry=registry)
        self.dropped = Gauge("botvisor_webhook_outbox_dropped", "Deliveries the outbox bound removed, by state "
                             "(dead, pending)", ["state"], registry=registry)
        self.recovered = Counter("botvisor_gateway_events_recovered", "Events recovered from a bot's history "
                                 "after a seq gap", ["bot"], registry=registry)
        self.unrecovered = Counter("botvisor_gateway_gaps_unrecovered", "Seq gaps the history could no longer "
                                   "fill (reported as a gateway event)", ["bot"], registry=registry)
        self.tap_messages = Counter("botvisor_gateway_tap_messages", "Messages read from the tap", registry=registry)
        self.tap_welcomes = Counter("botvisor_gateway_tap_welcomes", "(Re)connections to a supervisor's tap",
                                    registry=registry)
        self.stream_clients = Gauge("botvisor_gateway_stream_clients", "Live stream clients connected",
                                    registry=registry)
        self.stream_dropped = Counter("botvisor_gateway_stream_dropped", "Messages dropped for too slow stream "
                                      "clients", registry=registry)
