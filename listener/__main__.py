"""``python -m listener`` is ``archiver-db``."""

import sys

from listener import startup

if sys.argv[1:2] == ["run"]:
    startup.catch_stop_signals()  # before the heavy imports below

from listener.cli import main

sys.exit(main())
