"""Where archive records go: the sink protocols (messages, media rows), the PostgreSQL archive and
the Supabase archive (``supabase/``: API client, HTTP retry rules, rows, TUS uploads).
May import ``schema``, ``db`` and ``core``; never a source, the pipeline or media copying.
"""
