"""What `GET /metrics` shows, in Prometheus's text format: requests by status, latency, batch sizes, queue depth."""

from __future__ import annotations

from typing import Callable


class Metrics:
    """The server's counters and histograms, in a registry of their own (not the process-wide default)."""

    def __init__(self, max_batch: int, depth: Callable[[], int]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # the `_created` timestamps double the text and say nothing a scraper needs
        self.registry = CollectorRegistry()
        self.requests = Counter("dltrain_serve_requests", "HTTP requests answered, by route and status code",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("dltrain_serve_request_seconds", "Time from a predict request's arrival to its answer",
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10),
                                 registry=self.registry)
        sizes, size = [], 1
        while size < max_batch:
            sizes.append(size)
            size *= 2
        self.batch_size = Histogram("dltrain_serve_batch_size", "Rows in each model call",
                                    buckets=(*sizes, max_batch), registry=self.registry)
        depth_gauge = Gauge("dltrain_serve_queue_depth", "Requests waiting for the model", registry=self.registry)
        depth_gauge.set_function(depth)

    def text(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
