"""``archiver-db``: the command line. Parses arguments, reads settings, runs one command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from listener import settings, startup
from listener.core import errors, failure_kinds, redact
from listener.db import connect as pgconnect
from listener.ops import logsetup

# The service, the viewer and the exporter are imported by the commands that run them: an
# operator's `status` or `doctor` should not pay for loading the pipeline, the web stack and
# the Supabase client (about half a second of start-up).
if TYPE_CHECKING:
    # Under another name, so that a command using `service` without importing it is a type
    # error, not a NameError at run time.
    from listener import service as service_types

logger = logging.getLogger("listener.cli")

BACKFILL_BATCH_SIZE = 500
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archiver-db",
        description="Archive every bridged WhatsApp message from the bridge and Synapse DBs.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", help="run the archiver service (systemd runs this)")
    backfill = commands.add_parser("backfill", help="archive history, then exit")
    backfill.add_argument("--since", type=_date, help="only messages at or after this date")
    backfill.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"rows per batch (default: BATCH_SIZE if set, else {BACKFILL_BATCH_SIZE}: history "
        "is read in bulk, measured ~25%% faster than 100)",
    )
    migrate_cmd = commands.add_parser("migrate", help="create or upgrade the archive schema")
    migrate_cmd.add_argument(
        "--db-url",
        help="archive database URL (default SUPABASE_DB_URL when SUPABASE_URL is set, "
        "else ARCHIVE_DB_URL)",
    )
    for name, verb in (("install-triggers", "install"), ("uninstall-triggers", "remove")):
        sub = commands.add_parser(name, help=f"{verb} the NOTIFY trigger (bridge DB owner)")
        sub.add_argument("--db-url", help="bridge database URL (default WHATSAPP_DB_URL)")
    commands.add_parser("retry-failures", help="retry every recorded failure once, then exit")
    commands.add_parser("retry-media", help="retry failed, missing and pending media, then exit")
    commands.add_parser(
        "retry-decryption",
        help="decrypt again every message whose Megolm session has arrived since, then exit",
    )
    reconcile_cmd = commands.add_parser(
        "reconcile", help="archive from Synapse what the bridge rows no longer show, then exit"
    )
    reconcile_cmd.add_argument(
        "--from-start",
        action="store_true",
        help="scan Synapse's whole history, not just new events",
    )
    serve_cmd = commands.add_parser(
        "serve", help="read the archive in a browser (VIEWER_ADDR, default 127.0.0.1:8080)"
    )
    serve_cmd.add_argument("--addr", help="host:port to listen on (default VIEWER_ADDR)")
    export_cmd = commands.add_parser(
        "export", help="chats to a folder that opens offline: HTML, JSON or WhatsApp's text"
    )
    export_cmd.add_argument("--out", type=Path, required=True, help="the export folder")
    export_cmd.add_argument(
        "--room", action="append", default=[], help="a chat's Matrix room ID (repeat; default all)"
    )
    export_cmd.add_argument("--since", type=_date, help="messages from this date (inclusive)")
    export_cmd.add_argument("--until", type=_date, help="messages before this date (exclusive)")
    export_cmd.add_argument("--format", choices=("html", "json", "txt"), default="html")
    export_cmd.add_argument(
        "--media",
        choices=("copy", "link", "none"),
        default="copy",
        help="copy files (checked against their SHA-256), symlink them, or leave them out",
    )
    export_cmd.add_argument(
        "--incremental",
        action="store_true",
        help="into an earlier export's folder: write only what is new or changed",
    )
    export_cmd.add_argument(
        "--timezone", help="IANA time zone of dates and pages (default VIEWER_TIMEZONE)"
    )
    demo = commands.add_parser("demo", help="a self-contained demo on a local PostgreSQL")
    demo.add_argument("--pg-url", help="a PostgreSQL server to create the demo databases on")
    demo.add_argument("--duration", type=float, default=20.0, help="seconds of live traffic")
    demo.add_argument("--rate", type=float, default=50.0, help="live messages per second")
    demo.add_argument(
        "--serve",
        nargs="?",
        const="127.0.0.1:8080",
        metavar="ADDR",
        help="then read the demo archive in a browser (default 127.0.0.1:8080) until Ctrl-C",
    )
    _operations_parsers(commands)
    return parser


def _operations_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor_cmd = commands.add_parser("doctor", help="check connections, trigger, grants, schema")
    doctor_cmd.add_argument(
        "--max-clock-skew-s", type=float, default=2.0, help="allowed clock difference (seconds)"
    )
    status_cmd = commands.add_parser("status", help="cursor, lag, queue, failures, rooms")
    status_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    verify_cmd = commands.add_parser("verify", help="compare bridge and archive message counts")
    verify_cmd.add_argument("--since", type=_date, help="from this date (inclusive)")
    verify_cmd.add_argument("--until", type=_date, help="up to this date (exclusive)")
    verify_cmd.add_argument("--repair", action="store_true", help="archive what is missing")
    verify_cmd.add_argument("--json", action="store_true", help="machine-readable output")


def _date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        startup.catch_stop_signals()
    handler = _COMMANDS[args.command]
    try:
        return _run_async(handler(args))
    except errors.ConfigError as exc:
        print(f"archiver-db: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except errors.ArchiverError as exc:
        print(f"archiver-db: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


def _run_async(coro: Awaitable[int]) -> int:
    try:
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - uvloop is absent on Windows only
        return asyncio.run(coro)  # type: ignore[arg-type]


def _load(**overrides: object) -> settings.Settings:
    config = settings.load_settings(**overrides)
    logsetup.configure(
        level=config.log_level, json_lines=config.log_format == "json", secrets=config.secrets()
    )
    return config


async def _cmd_run(_args: argparse.Namespace) -> int:
    # A stop asked for while the service was still loading (systemd stopping a unit that just
    # started; listener/startup.py caught it) is a clean stop, not death by SIGTERM.
    from listener import service

    config = _load()
    svc = service.Service(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, svc.stop_event.set)
    if startup.requested:
        svc.stop_event.set()
    try:
        if await svc.open_when_reachable():
            await svc.run()
    finally:
        await svc.close()
        await svc.http.stop()
    return EXIT_FAILED if svc.crashed is not None else EXIT_OK


async def _cmd_serve(args: argparse.Namespace) -> int:
    from listener.viewer import auth as viewer_auth
    from listener.viewer import serve as viewer_serve

    config = settings.load_viewer_settings()
    logsetup.configure(
        level=config.log_level, json_lines=config.log_format == "json", secrets=config.secrets()
    )
    token = config.viewer_token.get_secret_value() if config.viewer_token else None
    generated = token is None
    token = token or viewer_auth.new_token()
    storage = None
    if config.supabase_url is not None and config.supabase_key is not None:
        storage = viewer_serve.SupabaseStorage(
            config.supabase_url, config.supabase_key.get_secret_value(), config.media_bucket
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def ready(url: str) -> None:
        # Printed, not logged: like Jupyter's, the login link is for the person at the terminal.
        if generated:
            print(f"archiver-db viewer: open {url}/login?token={token}", flush=True)
        else:
            print(f"archiver-db viewer: open {url} (log in with VIEWER_TOKEN)", flush=True)

    await viewer_serve.serve(
        archive_url=config.archive_url,
        addr=args.addr or config.viewer_addr,
        token=token,
        zone=ZoneInfo(config.viewer_timezone),
        page_size=config.viewer_page_size,
        media_root=config.media_archive_path,
        storage=storage,
        ready=ready,
        stop=stop,
    )
    return EXIT_OK


async def _cmd_export(args: argparse.Namespace) -> int:
    from listener.export import main as export_main
    from listener.export import progress as export_progress
    from listener.export import run as export_run
    from listener.viewer import serve as viewer_serve

    config = settings.load_viewer_settings()
    logsetup.configure(
        level=config.log_level, json_lines=config.log_format == "json", secrets=config.secrets()
    )
    try:
        zone = ZoneInfo(args.timezone or config.viewer_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise errors.ConfigError(f"--timezone: not an IANA time zone: {args.timezone!r}") from None
    options = export_run.Options(
        out=args.out,
        fmt=args.format,
        media=args.media,
        rooms=tuple(args.room),
        since=args.since,
        until=args.until,
        incremental=args.incremental,
        zone=zone,
    )
    storage = None
    if config.supabase_url is not None and config.supabase_key is not None:
        storage = viewer_serve.SupabaseStorage(
            config.supabase_url, config.supabase_key.get_secret_value(), config.media_bucket
        )
    with export_progress.bar() as progress:
        summary = await export_main.export(
            archive_url=config.archive_url,
            options=options,
            media_root=config.media_archive_path,
            storage=storage,
            progress=progress,
        )
    print(
        f"exported {summary.chats} chats, {summary.messages_written:,} messages on "
        f"{summary.pages_written} pages ({summary.pages_kept} unchanged) to {args.out}; "
        f"media: {summary.media_placed} files placed, {summary.media_failed} unavailable",
        file=sys.stderr,
    )
    return EXIT_OK


async def _cmd_backfill(args: argparse.Namespace) -> int:
    from listener import service

    overrides: dict[str, object] = {}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    config = _load(**overrides)
    if "batch_size" not in config.model_fields_set:
        config = config.model_copy(update={"batch_size": BACKFILL_BATCH_SIZE})
    svc = service.Service(config)
    await svc.open()
    try:
        count = await backfill(svc, since=args.since, progress=_progress_printer())
    finally:
        await svc.close()
    print(f"\nbackfill done: {count} rows processed", file=sys.stderr)
    return EXIT_OK


async def backfill(
    svc: service_types.Service,
    *,
    since: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Archive every bridge row (or those at/after ``since``) and return how many were done.

    A full backfill starts from rowid 0 and moves the live cursor forward when it ends; a
    ``--since`` backfill skips older rows and so must not move the cursor.
    """
    svc.tracker.cursor = 0
    if since is not None:
        svc.processor.persist_cursor = False
        svc.sweeper.since_ns = int(since.timestamp() * 1_000_000_000)
    total = await svc.bridge.count_after(0, since_ns=svc.sweeper.since_ns)
    workers = [
        asyncio.create_task(svc.workers.run(f"backfill-{i}"), name=f"backfill-{i}")
        for i in range(svc.config.workers)
    ]
    reporter = asyncio.create_task(_report(svc, total, progress), name="backfill-progress")
    try:
        while True:
            queued = await svc.sweeper.sweep_once()
            await svc.queue.join()
            while svc.workers.pending_retries or svc.tracker.in_flight:
                await asyncio.sleep(0.05)
                await svc.queue.join()
            if queued == 0:
                break
        await svc.processor.flush_cursor()
    finally:
        reporter.cancel()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(reporter, *workers, return_exceptions=True)
    if progress:
        progress(svc.processor.rows_done, total)
    return svc.processor.rows_done


async def _report(
    svc: service_types.Service, total: int, progress: Callable[[int, int], None] | None
) -> None:
    while progress is not None:
        progress(svc.processor.rows_done, total)
        await asyncio.sleep(0.5)


def _progress_printer() -> Callable[[int, int], None]:
    started = asyncio.get_running_loop().time()

    def show(done: int, total: int) -> None:
        elapsed = max(asyncio.get_running_loop().time() - started, 1e-6)
        share = done / total if total else 1.0
        bar = "#" * int(share * 30)
        print(
            f"\r[{bar:<30}] {done}/{total} rows  {done / elapsed:,.0f} rows/s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show


async def _cmd_migrate(args: argparse.Namespace) -> int:
    from listener.schema import migrate

    dsn = args.db_url or _archive_url()
    conn = await pgconnect.connect(dsn, application_name="archiver-db:migrate")
    try:
        applied = await migrate.migrate(conn)
        if applied:
            # PostgREST (Supabase's REST API) serves from a schema cache: reload it now. Without
            # a PostgREST listening, this notification is a no-op.
            await conn.execute("NOTIFY pgrst, 'reload schema'")
    finally:
        await conn.close()
    where = redact.redact_url(dsn)
    print(f"applied {', '.join(applied)} to {where}" if applied else f"{where} is up to date")
    return EXIT_OK


def _archive_url() -> str:
    """The archive database: Supabase's (SUPABASE_DB_URL) when the Supabase sink is chosen."""
    config = settings.load_settings()
    if config.supabase_url is not None:
        if config.supabase_db_url is None:
            raise errors.ConfigError(
                "SUPABASE_DB_URL is not set: the Supabase sink's database URL (Project Settings "
                "> Database > Connection string), or pass --db-url"
            )
        return config.supabase_db_url.get_secret_value()
    if config.archive_db_url is None:
        raise errors.ConfigError("ARCHIVE_DB_URL is not set (or pass --db-url)")
    return config.archive_db_url.get_secret_value()


async def _cmd_triggers(args: argparse.Namespace, *, install: bool) -> int:
    from listener.schema import sqlfiles

    if args.db_url:
        # Only the channel is needed from the settings here: the other required ones may be
        # absent on the bridge owner's machine.
        dsn, channel = args.db_url, settings.load_channel_settings().notify_channel
    else:
        config = settings.load_settings()
        dsn, channel = config.whatsapp_db_url.get_secret_value(), config.notify_channel
    conn = await pgconnect.connect(dsn, application_name="archiver-db:install")
    name = "triggers.sql" if install else "uninstall_triggers.sql"
    try:
        await sqlfiles.run_sql_file(conn, name, {"channel": channel})
    except Exception as exc:
        raise errors.ArchiverError(f"{name} failed: {pgconnect.describe(exc)}") from None
    finally:
        await conn.close()
    verb = "installed" if install else "removed"
    print(f"trigger {verb} on {redact.redact_url(dsn)} (channel {channel})")
    return EXIT_OK


async def _cmd_reconcile(args: argparse.Namespace) -> int:
    from listener import service
    from listener.flow import reconcile

    config = _load(reconcile_grace_s=0.0)
    svc = service.Service(config)
    await svc.open()
    total = reconcile.Stats()
    try:
        while True:
            stats = await svc.reconciler.run_once(from_start=args.from_start and not total.scanned)
            total.scanned += stats.scanned
            total.recovered += stats.recovered
            total.edited += stats.edited
            total.reactions += stats.reactions
            total.redactions += stats.redactions
            if stats.scanned == 0 or stats.cursor == total.cursor:
                break
            total.cursor = stats.cursor
    finally:
        await svc.close()
    print(
        f"scanned {total.scanned} events: {total.recovered} messages recovered, "
        f"{total.edited} edited, {total.reactions} reactions, {total.redactions} redactions"
    )
    return EXIT_OK


async def _cmd_retry_media(_args: argparse.Namespace) -> int:
    from listener import service

    config = _load()
    svc = service.Service(config)
    await svc.open()
    try:
        if svc.media is None:
            raise errors.ConfigError(
                "media archiving is off (MEDIA_STORE_PATH / MEDIA_ARCHIVE_PATH not set)"
            )
        outcomes = await svc.media.retry_media()
    finally:
        await svc.close()
    summary = ", ".join(f"{status} {n}" for status, n in sorted(outcomes.items())) or "nothing"
    print(f"retried media: {summary}")
    unresolved = sum(n for status, n in outcomes.items() if status in ("failed", "missing"))
    return EXIT_OK if not unresolved else EXIT_FAILED


async def _cmd_retry_failures(_args: argparse.Namespace) -> int:
    from listener import service

    config = _load(missing_event_timeout_s=1e-9)
    svc = service.Service(config)
    await svc.open()
    try:
        failures = await svc.sink.open_failures(failure_kinds.RETRYABLE)
        await svc.rearchive([f.bridge_rowid for f in failures if f.bridge_rowid is not None])
        still_open = await svc.sink.open_failures(failure_kinds.RETRYABLE)
    finally:
        await svc.close()
    print(f"retried {len(failures)} failures; {len(still_open)} still open")
    return EXIT_OK if not still_open else EXIT_FAILED


async def _cmd_retry_decryption(_args: argparse.Namespace) -> int:
    from listener import service

    svc = service.Service(_load())
    await svc.open()
    try:
        stats = await svc.retry_decryption()
    finally:
        await svc.close()
    print(
        f"{stats.waiting} messages waiting for a Megolm session; {stats.retried} decrypted again "
        "(their session arrived)"
    )
    return EXIT_OK


async def _cmd_demo(args: argparse.Namespace) -> int:
    from listener.sim import demo  # imported here: the simulator is not needed by the service

    logsetup.configure(level="WARNING", json_lines=False, secrets=[])
    result: int = await demo.run_demo(
        pg_url=args.pg_url, duration_s=args.duration, rate=args.rate, serve_addr=args.serve
    )
    return result


async def _cmd_doctor(args: argparse.Namespace) -> int:
    from listener.ops import doctor, doctor_facts

    config = _load()
    results = await doctor_facts.diagnose(config, max_clock_skew_s=args.max_clock_skew_s)
    for result in results:
        print(result.line())
    print(doctor.summary(results))
    return EXIT_OK if doctor.passed(results) else EXIT_FAILED


async def _cmd_status(args: argparse.Namespace) -> int:
    from listener.ops import status

    config = _load()
    conn = await pgconnect.connect(
        _archive_url(), application_name="archiver-db:status", error=errors.SinkUnavailable
    )
    try:
        snap = await status.snapshot(conn)
    finally:
        await conn.close()
    interval_s = config.health_check_interval_s
    if args.json:
        print(json.dumps(snap.as_json(heartbeat_interval_s=interval_s), indent=2, default=str))
    else:
        print(status.render(snap, heartbeat_interval_s=interval_s))
    return EXIT_OK


async def _cmd_verify(args: argparse.Namespace) -> int:
    from listener import service
    from listener.ops import verify

    # A repair records a still-missing Synapse event as a failure at once instead of waiting.
    config = _load(missing_event_timeout_s=1e-9) if args.repair else _load()
    report = await verify.compare(config, since=args.since, until=args.until)
    if args.repair and report.missing:
        svc = service.Service(config)
        await svc.open()
        try:
            await svc.rearchive([m.rowid for m in report.missing])
        finally:
            await svc.close()
        logger.info(
            "repair archived %d missing messages",
            len(report.missing),
            extra={"action": "verify_repaired"},
        )
        report = await verify.compare(config, since=args.since, until=args.until)
    print(json.dumps(report.as_json(), indent=2) if args.json else verify.render(report))
    return EXIT_FAILED if report.missing else EXIT_OK


async def _triggers_install(args: argparse.Namespace) -> int:
    return await _cmd_triggers(args, install=True)


async def _triggers_uninstall(args: argparse.Namespace) -> int:
    return await _cmd_triggers(args, install=False)


_COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
    "run": _cmd_run,
    "serve": _cmd_serve,
    "export": _cmd_export,
    "backfill": _cmd_backfill,
    "migrate": _cmd_migrate,
    "install-triggers": _triggers_install,
    "uninstall-triggers": _triggers_uninstall,
    "retry-failures": _cmd_retry_failures,
    "retry-media": _cmd_retry_media,
    "retry-decryption": _cmd_retry_decryption,
    "reconcile": _cmd_reconcile,
    "demo": _cmd_demo,
    "doctor": _cmd_doctor,
    "status": _cmd_status,
    "verify": _cmd_verify,
}


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
