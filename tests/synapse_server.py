"""A real Synapse homeserver as a child process, for integration tests.

Follows the recipe in the shared reference (real-synapse.md): a PostgreSQL database with C collation
created from template0, a hand-written config (written as JSON, which YAML accepts, so no YAML
library is needed), a signing key written directly, one application service for the WhatsApp
ghosts, and readiness by polling ``/_matrix/client/versions``.

Only the standard library, httpx and the ``psql`` client are used, so the class works from plain
synchronous fixtures as well as from scripts.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ADMIN_URL = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 40
AS_ID = "whatsapp-test"
AS_SENDER_LOCALPART = "whatsappbot"
GHOST_PREFIX = "whatsapp_"

# Limits high enough that a test sending thousands of events never sees a 429.
_NO_LIMIT = {"per_second": 10000, "burst_count": 10000}
_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _NO_LIMIT,
    "rc_registration": _NO_LIMIT,
    "rc_login": {"address": _NO_LIMIT, "account": _NO_LIMIT, "failed_attempts": _NO_LIMIT},
    "rc_joins": {"local": _NO_LIMIT, "remote": _NO_LIMIT},
    "rc_joins_per_room": _NO_LIMIT,
    "rc_invites": {"per_room": _NO_LIMIT, "per_user": _NO_LIMIT, "per_issuer": _NO_LIMIT},
    "rc_media_create": _NO_LIMIT,
    "rc_admin_redaction": _NO_LIMIT,
}


class SynapseStartError(RuntimeError):
    """Synapse did not become ready."""


@dataclass(frozen=True)
class PgTarget:
    """Connection parts of the PostgreSQL server, taken from an admin URL."""

    user: str
    password: str | None
    host: str
    port: int

    @classmethod
    def from_url(cls, url: str) -> PgTarget:
        parts = urllib.parse.urlsplit(url)
        return cls(
            user=urllib.parse.unquote(parts.username or "postgres"),
            password=urllib.parse.unquote(parts.password) if parts.password else None,
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
        )

    def url(self, dbname: str) -> str:
        auth = urllib.parse.quote(self.user)
        if self.password:
            auth += ":" + urllib.parse.quote(self.password)
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}"

    def psql(self, sql: str) -> str:
        """Run one statement against the ``postgres`` maintenance DB and return its output."""
        env = dict(os.environ)
        if self.password:
            env["PGPASSWORD"] = self.password
        cmd = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.host]
        cmd += ["-p", str(self.port), "-U", self.user, "-d", "postgres", "-c", sql]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def database_exists(self, dbname: str) -> bool:
        return self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{dbname}'") == "1"

    def drop_database(self, dbname: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    def create_database(self, dbname: str, template: str | None = None) -> None:
        # Synapse refuses any collation but C; only template0 may be cloned with a new collation.
        self.drop_database(dbname)
        if template:
            self.psql(f'CREATE DATABASE "{dbname}" TEMPLATE "{template}"')
        else:
            self.psql(
                f"CREATE DATABASE \"{dbname}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
                "TEMPLATE template0"
            )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def template_name() -> str:
    """A template per Synapse version, since the migrated schema depends on it."""
    from importlib.metadata import version

    return "synapse_tpl_" + version("matrix-synapse").replace(".", "_")


class SynapseServer:
    """One Synapse process on a free 127.0.0.1 port, with its own database and media store."""

    def __init__(
        self,
        workdir: Path,
        dbname: str,
        *,
        server_name: str = "localhost",
        admin_url: str = ADMIN_URL,
        use_template: bool = False,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir
        self.dbname = dbname
        self.server_name = server_name
        self.use_template = use_template
        self.extra_config = extra_config or {}
        self.pg = PgTarget.from_url(admin_url)
        self.as_token = "as_" + secrets.token_hex(16)
        self.hs_token = "hs_" + secrets.token_hex(16)
        self.registration_shared_secret = secrets.token_hex(16)
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def media_store_path(self) -> Path:
        return self.workdir / "media_store"

    @property
    def db_url(self) -> str:
        return self.pg.url(self.dbname)

    @property
    def log_path(self) -> Path:
        return self.workdir / "homeserver.log"

    @property
    def bot_mxid(self) -> str:
        return f"@{AS_SENDER_LOCALPART}:{self.server_name}"

    def start(self) -> None:
        if self.use_template:
            template = self._ensure_template()
            self.pg.create_database(self.dbname, template=template)
        else:
            self.pg.create_database(self.dbname)
        self._launch(self.dbname)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)

    def drop_database(self) -> None:
        self.pg.drop_database(self.dbname)

    def __enter__(self) -> SynapseServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ensure_template(self) -> str:
        """Migrate a scratch DB once; later starts clone it (saves the schema creation time)."""
        name = template_name()
        if self.pg.database_exists(name):
            return name
        # Build under a private name and rename into place, so a concurrent session never clones
        # a half-migrated database.
        scratch = f"{name}_build_{secrets.token_hex(4)}"
        self.pg.create_database(scratch)
        try:
            self._launch(scratch)
        finally:
            self.stop()
        try:
            self.pg.psql(f'ALTER DATABASE "{scratch}" RENAME TO "{name}"')
        except RuntimeError:
            self.pg.drop_database(scratch)  # somebody else won the race; theirs is as good
        return name

    def _launch(self, dbname: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.media_store_path.mkdir(exist_ok=True)
        self.port = free_port()
        config_path = self._write_files(dbname)
        cmd = [sys.executable, "-m", "synapse.app.homeserver", "-c", str(config_path)]
        with (self.workdir / "stdout.log").open("ab") as out:
            self._proc = subprocess.Popen(
                cmd, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        url = f"{self.base_url}/_matrix/client/versions"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    raise SynapseStartError(f"Synapse exited early\n{self.log_tail()}")
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                time.sleep(0.05)
        self.stop()
        raise SynapseStartError(f"Synapse not ready after {READY_TIMEOUT_S}s\n{self.log_tail()}")

    def log_tail(self) -> str:
        lines: list[str] = []
        for path in (self.workdir / "stdout.log", self.log_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                lines += [f"--- {path.name}", *text]
        return "\n".join(lines)

    def _write_files(self, dbname: str) -> Path:
        key_path = self.workdir / "signing.key"
        if not key_path.exists():
            seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
            key_path.write_text(f"ed25519 a_test {seed}\n")
        log_config = self.workdir / "log.config"
        log_config.write_text(json.dumps(self._log_config()))
        as_path = self.workdir / "appservice-whatsapp.yaml"
        as_path.write_text(json.dumps(self._appservice()))
        config_path = self.workdir / "homeserver.yaml"
        config = self._homeserver(dbname, key_path, log_config, as_path)
        config_path.write_text(json.dumps(config, indent=2))
        return config_path

    def _log_config(self) -> dict[str, Any]:
        return {
            "version": 1,
            "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "plain",
                    "filename": str(self.log_path),
                }
            },
            "root": {"level": "INFO", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }

    def _appservice(self) -> dict[str, Any]:
        server = self.server_name.replace(".", r"\.")
        return {
            "id": AS_ID,
            "url": None,  # never push transactions: the tests read Synapse's DB instead
            "as_token": self.as_token,
            "hs_token": self.hs_token,
            "sender_localpart": AS_SENDER_LOCALPART,
            "rate_limited": False,
            "namespaces": {
                "users": [{"exclusive": True, "regex": f"@{GHOST_PREFIX}.*:{server}"}],
                "aliases": [{"exclusive": True, "regex": f"#{GHOST_PREFIX}.*:{server}"}],
                "rooms": [],
            },
        }

    def _homeserver(
        self, dbname: str, key_path: Path, log_config: Path, as_path: Path
    ) -> dict[str, Any]:
        db_args: dict[str, Any] = {
            "user": self.pg.user,
            "dbname": dbname,
            "host": self.pg.host,
            "port": self.pg.port,
            "cp_min": 1,
            "cp_max": 5,
        }
        if self.pg.password:
            db_args["password"] = self.pg.password
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "public_baseurl": f"{self.base_url}/",
            "pid_file": str(self.workdir / "homeserver.pid"),
            "signing_key_path": str(key_path),
            "log_config": str(log_config),
            "media_store_path": str(self.media_store_path),
            "report_stats": False,
            "listeners": [
                {
                    "port": self.port,
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "bind_addresses": ["127.0.0.1"],
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "psycopg2", "args": db_args},
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "registration_shared_secret": self.registration_shared_secret,
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "enable_authenticated_media": False,
            "app_service_config_files": [str(as_path)],
            "max_upload_size": "50M",
            **_RATE_LIMITS,
        }
        config.update(self.extra_config)
        return config


if __name__ == "__main__":  # manual smoke run: python tests/synapse_server.py /tmp/hs
    import tempfile

    root = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="synapse_"))
    began = time.monotonic()
    server = SynapseServer(root, "synapse_smoke", use_template="--template" in sys.argv)
    with server:
        print(json.dumps({"base_url": server.base_url, "ready_s": time.monotonic() - began}))
    server.drop_database()
