"""``python -m listener`` is ``archiver-db``."""

import sys

from listener.cli import main

sys.exit(main())
