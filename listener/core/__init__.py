"""The pure middle: records, the exception tree, NOTIFY payload parsing, enrichment, edit rules,
event kinds, timestamps, text safety, the rowid tracker, backoff, the room filter, secret
redaction, archive rows, and ``networks/`` (what each bridge network's ids mean). Imports nothing
of ``listener`` outside ``core``: no asyncpg, no files, no HTTP, no clock of its own (callers pass
clocks and random sources).
"""
