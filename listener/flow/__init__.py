"""The event-driven pipeline: the LISTEN edge, the timed sweep, the processor that turns bridge
rowids into durable archive records, the worker coroutines and the Synapse reconciliation pass.
May import ``ops`` (metrics), ``sources``, ``sinks``, ``schema``, ``db`` and ``core``; not
``media``.
"""
