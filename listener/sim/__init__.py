"""Tools for demos, tests and benchmarks, not part of the service: the bridge simulator, the
Synapse event writer, ``archiver-db demo`` and the source schemas they build (``fixtures/``).
May import anything; nothing imports ``sim`` except the demo verb in ``cli`` and the tests.
"""
