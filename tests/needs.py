"""Programs from Debian's packages that some tests need (``./dev test`` installs them where
apt-get works). Missing, such a test skips with one line saying why, except under ``CI=true``,
where it fails: CI must run it, and a silent skip there would hide a broken install step.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def program(name: str, *, package: str) -> str:
    """The path of ``name``, or skip (fail under CI=true) naming the package to install."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (apt-get install {package}; ./dev test does it)")
    return path


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
    pytest.skip(reason)
