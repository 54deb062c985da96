"""The pure middle: records, the exception tree, NOTIFY payload parsing, enrichment, edit rules,
event kinds, timestamps, text safety, the rowid tracker, backoff, the room filter, secret
redaction and archive rows. Imports nothing of ``listener`` outside ``core``: no asyncpg, no
files, no HTTP, no clock of its own (callers pass clocks and random sources).
"""
