"""Encrypted portals: the bridge's Megolm sessions (read-only) and the decryption of
``m.room.encrypted`` events with vodozemac, so the pipeline archives the plaintext event.

Imports sources/, db/ and core/ (the pure parsing is ``core/megolm.py``); never ops/ or flow/:
the service hands in a callback for metrics.
"""
