"""How the archiver is operated: Prometheus metrics and their HTTP server (Starlette on
uvicorn), health probes, sd_notify, logging, and the operator commands that read the databases
(doctor, status, verify, archive statistics). Sits below ``flow``/``media`` (they report into its
metrics); may import ``sources``, ``sinks``, ``schema``, ``db``, ``settings`` and ``core``.
"""
