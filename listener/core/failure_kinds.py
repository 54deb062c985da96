"""The kinds of failure recorded in ``archive_failures``, and which of them a retry can clear."""

from __future__ import annotations

MISSING_EVENT = "missing_event"
MALFORMED_EVENT = "malformed_event"
REJECTED_EVENT = "rejected_event"
SINK_REJECTED = "sink_rejected"
RETRYABLE = [MISSING_EVENT, MALFORMED_EVENT, REJECTED_EVENT, SINK_REJECTED]
