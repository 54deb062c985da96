"""The read-only edges: the bridge's database (mautrix bridgev2 schema) and Synapse's database.
May import ``db`` and ``core``; never a sink, never the pipeline.
"""
