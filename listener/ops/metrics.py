"""Prometheus metrics, one registry per service instance (tests run several in one process)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

import listener
from listener.core import megolm

# Sub-millisecond to minutes: the pipeline's floor is about a millisecond, an outage is minutes.
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
)  # fmt: skip

# The archive's media.status values (sql/archive/0001_init.sql), minus the transient 'pending'.
MEDIA_STATUSES = ("stored", "missing", "quarantined", "rejected", "failed", "skipped")
DECRYPTION_RESULTS = tuple(str(status) for status in megolm.Status)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages_archived = Counter(
            "archiver_messages_archived",
            "Messages written to the archive.",
            ["room_type", "message_type"],
            registry=r,
        )
        self.latency = Histogram(
            "archiver_latency_seconds",
            "From the event reaching Synapse (just before the bridge commits its row) to the "
            "archive commit.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.queue_depth = Gauge("archiver_queue_depth", "Work items waiting.", registry=r)
        self.queue_capacity = Gauge("archiver_queue_capacity", "Queue capacity.", registry=r)
        self.notifications = Counter(
            "archiver_notifications",
            "NOTIFY payloads by result: queued (message ranges taken as hints), reconcile "
            "(deletions, reactions), malformed (not ours); and hint ranges: clamped (reaching "
            "past the newest bridge rowid), ignored (naming only rows already archived).",
            ["result"],
            registry=r,
        )
        self.notify_backlog = Gauge(
            "archiver_notify_backlog_ranges",
            "Row ranges from UPDATE notifications still to re-archive (bounded; read at a "
            "limited rate so live messages never wait behind them).",
            registry=r,
        )
        self.sweep_recovered = Counter(
            "archiver_sweep_recovered_rows",
            "Rows the sweep found that no notification had delivered. A steady non-zero rate "
            "means NOTIFY is missing rows (no trigger, listener down).",
            registry=r,
        )
        self.source_errors = Counter(
            "archiver_source_errors", "Source errors.", ["source", "kind"], registry=r
        )
        self.sink_errors = Counter("archiver_sink_errors", "Sink errors.", ["kind"], registry=r)
        self.reconnects = Counter(
            "archiver_reconnects", "Reconnections.", ["connection"], registry=r
        )
        self.rowid_lag = Gauge(
            "archiver_rowid_lag", "Newest bridge rowid minus the archive cursor.", registry=r
        )
        self.cursor = Gauge("archiver_cursor_rowid", "The archive cursor.", registry=r)
        self.last_archived = Gauge(
            "archiver_last_archived_timestamp_seconds",
            "Unix time of the last archive commit.",
            registry=r,
        )
        self.failures_recorded = Counter(
            "archiver_failures_recorded", "Failures recorded, by kind.", ["kind"], registry=r
        )
        self.failures_pending = Gauge(
            "archiver_failures_pending", "Unresolved failures in the archive.", registry=r
        )
        self.trigger_present = Gauge(
            "archiver_trigger_present", "1 when the NOTIFY trigger is installed.", registry=r
        )
        self.listener_connected = Gauge(
            "archiver_listener_connected", "1 while the LISTEN connection is up.", registry=r
        )
        self.build_info = Info("archiver_build", "Build information.", registry=r)
        self.build_info.info({"version": listener.__version__})
        self._add_operations_metrics()

    # -- operations ------------------------------------------------------------------------------

    def _add_operations_metrics(self) -> None:
        r = self.registry
        self.started_at = time.time()
        self.media_items = Counter(
            "archiver_media_items",
            "Media items handled, by outcome (stored, missing, quarantined, rejected, failed, "
            "skipped).",
            ["status"],
            registry=r,
        )
        self.media_bytes = Counter(
            "archiver_media_bytes", "Bytes of media handled, by outcome.", ["status"], registry=r
        )
        for status in MEDIA_STATUSES:  # present from the start, so increase() sees the first one
            self.media_items.labels(status)
            self.media_bytes.labels(status)
        self.decryption_total = Counter(
            "archiver_decryption",
            "Encrypted events decrypted or not, by result (decrypted, no_session, withheld, "
            "bad_key, error); an event read again counts again.",
            ["result"],
            registry=r,
        )
        for result in DECRYPTION_RESULTS:
            self.decryption_total.labels(result)
        self.undecryptable_messages = Gauge(
            "archiver_undecryptable_messages",
            "Archived messages waiting for their Megolm session (decryption = no_session), "
            "as counted by the last full late-key cycle.",
            registry=r,
        )
        self.seconds_since_last_archived = Gauge(
            "archiver_seconds_since_last_archived",
            "Seconds since the last archive commit (since the start while none yet).",
            registry=r,
        )
        self.seconds_since_last_archived.set_function(self._seconds_since_last_archived)
        self.ready = Gauge(
            "archiver_ready",
            "1 while connected to every source and the sink with the trigger.",
            registry=r,
        )
        self.dependency_up = Gauge(
            "archiver_dependency_up",
            "1 while a dependency answers its health probe (listener, bridge, synapse, archive, "
            "trigger).",
            ["dependency"],
            registry=r,
        )
        self.heartbeat_saved = Gauge(
            "archiver_heartbeat_timestamp_seconds",
            "Unix time of the last heartbeat saved in the archive.",
            registry=r,
        )

        # archive fidelity (edits, deletions, reactions, reconciliation)
        self.edits_archived = Counter(
            "archiver_edits_archived", "Edit versions written to message_edits.", registry=r
        )
        self.reactions_archived = Counter(
            "archiver_reactions_archived", "Reaction rows written (added or removed).", registry=r
        )
        self.deletions_recorded = Counter(
            "archiver_deletions_recorded",
            "Messages written with deleted_at set (redacted on Matrix, deleted on WhatsApp).",
            registry=r,
        )
        self.reconcile_recovered = Counter(
            "archiver_reconcile_recovered_messages",
            "Messages only the Synapse reconciliation pass found (their bridge row was gone or "
            "never seen).",
            registry=r,
        )

    def _seconds_since_last_archived(self) -> float:
        last = value(self.last_archived) or self.started_at
        return max(0.0, time.time() - last)


def value(gauge: Gauge) -> float:
    """The current value of an unlabelled gauge (prometheus_client has no public getter)."""
    return float(gauge._value.get())
