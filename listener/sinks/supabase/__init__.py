"""The Supabase archive: the API client over the supabase package, HTTP retry rules, PostgREST
rows, the message and media-row sinks, and the TUS resumable-upload client.
Part of ``sinks``: the same imports are allowed.
"""
