"""The SQL files the package ships (``sql/`` at the top of the repository, ``listener/sql`` in the
wheel), the psql-variable rendering that lets the CLI run them, and the archive migrations.
May import ``core`` only.
"""
