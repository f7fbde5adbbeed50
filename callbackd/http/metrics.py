"""Prometheus metrics: an application-owned registry and a collector reading live stats.

Nothing is registered in prometheus-client's global default registry: each API server owns
its :class:`prometheus_client.CollectorRegistry`, so two daemons in one process (tests) or a
restarted server never share or collide on metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class StatsSource(Protocol):
    """What the collector reads: the running Application (or a stand-in in tests)."""

    @property
    def capture(self) -> Any: ...
    @property
    def dialer(self) -> Any: ...
    @property
    def links(self) -> Mapping[str, Any]: ...
    @property
    def outbox_pruner(self) -> Any: ...


@dataclass
class RequestCounts:
    """Requests per (campaign, status), refreshed from the database before each scrape."""

    by_status: Sequence[tuple[str, str, int]] = ()


class CallbackdCollector(Collector):
    """Reads the capture, dialer and outbox retention counters and the link states at scrape
    time."""

    def __init__(self, source: Callable[[], StatsSource | None], counts: RequestCounts) -> None:
        self._source = source
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        source = self._source()
        requests = GaugeMetricFamily(
            "callbackd_requests",
            "Callback requests by campaign and status.",
            labels=["campaign", "status"],
        )
        for campaign, status, count in self._counts.by_status:
            requests.add_metric([campaign, status], count)
        yield requests
        if source is None:
            return
        links = GaugeMetricFamily("callbackd_ami_up", "1 when the AMI link is up.", labels=["pbx"])
        for name, link in source.links.items():
            links.add_metric([name], 1.0 if link.is_up else 0.0)
        yield links
        capture = source.capture
        if capture is not None:
            events = CounterMetricFamily(
                "callbackd_capture_events",
                "Abandons and inbound connects handled by capture, by outcome.",
                labels=["outcome"],
            )
            for item in fields(capture.stats):
                events.add_metric([item.name], getattr(capture.stats, item.name))
            yield events
            yield GaugeMetricFamily(
                "callbackd_capture_buffered",
                "Abandons waiting in memory for the database.",
                value=capture.buffered,
            )
        dialer = source.dialer
        if dialer is not None:
            yield GaugeMetricFamily(
                "callbackd_dialer_in_flight", "Callbacks being placed now.", value=dialer.in_flight
            )
            for name, help_text in (
                ("claimed", "Requests claimed for a call."),
                ("originated", "Originates sent."),
                ("adopted", "In-flight attempts adopted from a stopped instance."),
            ):
                yield CounterMetricFamily(
                    f"callbackd_dialer_{name}", help_text, value=getattr(dialer.stats, name)
                )
            finished = CounterMetricFamily(
                "callbackd_dialer_attempts_finished",
                "Finished callback attempts, by outcome.",
                labels=["outcome"],
            )
            for outcome, count in sorted(dialer.stats.finished.items()):
                finished.add_metric([outcome], count)
            yield finished
        pruner = source.outbox_pruner
        if pruner is not None:
            pruned = CounterMetricFamily(
                "callbackd_outbox_pruned",
                "Outbox rows deleted by retention (outbox.retention_days), by kind.",
                labels=["kind"],
            )
            total = pruner.total
            for kind, count in (
                ("event", total.events),
                ("sms", total.sms),
                ("delivery", total.deliveries),
            ):
                pruned.add_metric([kind], count)
            yield pruned


@dataclass
class ApiMetrics:
    """The registry of one API server and its own HTTP metrics."""

    source: Callable[[], StatsSource | None]
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    counts: RequestCounts = field(default_factory=RequestCounts)

    def __post_init__(self) -> None:
        self.http_requests = Counter(
            "callbackd_http_requests",
            "HTTP API requests, by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "callbackd_http_request_duration_seconds",
            "HTTP API request duration.",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.registry.register(CallbackdCollector(self.source, self.counts))
