"""``archiver-db export``: a chat (or all) taken away as files that open offline: HTML pages,
JSON, or WhatsApp's own text format, with their media. Renders through the viewer's views,
sanitiser and templates; may import ``viewer``, ``db`` and ``core``, not the pipeline.
"""
