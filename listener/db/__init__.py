"""The asyncpg edge every database reader and writer shares: opening connections and pools with
driver errors translated in one place (``connect``), and the named runtime queries in ``sql/``
(``queries``). May import ``core`` only.
"""
