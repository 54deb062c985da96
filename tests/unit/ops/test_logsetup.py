"""listener.ops.logsetup: text or JSON lines, with known secrets scrubbed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from listener.ops import logsetup

SECRET = "postgresql://bridge:hunter2@db.internal/whatsapp"


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("listener.test", logging.INFO, __file__, 1, msg, args, None)


@pytest.fixture
def stream_logger(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """An isolated logger writing through a SecretFilter to a string buffer."""
    formatter: logging.Formatter = getattr(request, "param", logsetup.JsonFormatter())
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(logsetup.SecretFilter([SECRET, ""]))
    logger = logging.getLogger(f"listener.test.{request.node.name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, stream
    logger.handlers.clear()


# --- SecretFilter --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "args", "expected"),
    [
        pytest.param("connecting to %s", (SECRET,), "connecting to ***", id="secret-in-arg"),
        pytest.param(
            "retry %d of %s failed: %s",
            (3, SECRET, "timeout"),
            "retry 3 of *** failed: timeout",
            id="secret-among-args",
        ),
        pytest.param(f"dsn={SECRET}", (), "dsn=***", id="secret-in-template"),
        pytest.param(
            "postgresql://bridge:%s@db.internal/whatsapp",
            ("hunter2",),
            "***",
            id="secret-assembled-by-formatting",
        ),
        pytest.param("%s and %s", (SECRET, SECRET), "*** and ***", id="twice"),
        pytest.param("nothing to hide: %s", ("x",), "nothing to hide: x", id="clean"),
    ],
)
def test_secret_filter__scrubs_secret_from_formatted_message(
    msg: str, args: tuple[object, ...], expected: str
) -> None:
    record = _record(msg, *args)

    assert logsetup.SecretFilter([SECRET]).filter(record) is True

    assert (record.msg, record.args, record.getMessage()) == (expected, None, expected)


@pytest.mark.parametrize("secrets", [[], [""], ["", ""]])
def test_secret_filter__without_secrets_leaves_record_untouched(secrets: list[str]) -> None:
    record = _record("value %s", 42)

    assert logsetup.SecretFilter(secrets).filter(record) is True

    assert (record.msg, record.args) == ("value %s", (42,))


def test_secret_filter__scrubs_through_a_handler(
    stream_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = stream_logger

    logger.warning("cannot connect to %s", SECRET)

    assert json.loads(stream.getvalue())["msg"] == "cannot connect to ***"
    assert "hunter2" not in stream.getvalue()


def test_secret_filter__mismatched_log_args_do_not_raise_into_caller(
    stream_logger: tuple[logging.Logger, io.StringIO],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logger, _ = stream_logger
    monkeypatch.setattr(logging, "raiseExceptions", False)  # keep handleError quiet

    logger.warning("%s and %s", "only one argument")


def test_secret_filter__scrubs_secret_from_exception_text(
    stream_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = stream_logger

    try:
        raise ConnectionError(f"could not reach {SECRET}")
    except ConnectionError:
        logger.exception("bridge source failed")

    assert "hunter2" not in stream.getvalue()


# --- JsonFormatter -------------------------------------------------------------------------


def test_json_formatter__one_object_per_line_with_action(
    stream_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = stream_logger

    logger.info("reconnected after %d attempts", 3, extra={"action": "listener_reconnected"})
    logger.warning("queue full", extra={"action": "notify_queue_full", "dropped": 12})
    logger.debug("plain")

    lines = stream.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(lines) == 3
    assert all(isinstance(entry.pop("ts"), float) for entry in entries)
    assert entries == [
        {
            "level": "info",
            "logger": logger.name,
            "msg": "reconnected after 3 attempts",
            "action": "listener_reconnected",
        },
        {
            "level": "warning",
            "logger": logger.name,
            "msg": "queue full",
            "action": "notify_queue_full",
            "dropped": 12,
        },
        {"level": "debug", "logger": logger.name, "msg": "plain"},
    ]


def test_json_formatter__multiline_message_and_exception_stay_on_one_line(
    stream_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = stream_logger

    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("first line\nsecond line", extra={"action": "worker_failed"})

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert (entry["msg"], entry["action"], entry["level"]) == (
        "first line\nsecond line",
        "worker_failed",
        "error",
    )
    assert entry["exc"].startswith("Traceback (most recent call last):")
    assert entry["exc"].endswith("ValueError: boom")


def test_json_formatter__non_json_extra_is_rendered_as_text() -> None:
    record = _record("x")
    record.path = logsetup  # a module object: not JSON-serialisable

    entry = json.loads(logsetup.JsonFormatter().format(record))

    assert entry["path"] == str(logsetup)


# --- TextFormatter -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "suffix"),
    [({"action": "listener_reconnected"}, " [listener_reconnected]"), ({}, "")],
)
def test_text_formatter__appends_action(extra: dict[str, str], suffix: str) -> None:
    record = _record("hello %s", "world")
    record.__dict__.update(extra)

    line = logsetup.TextFormatter().format(record)

    assert line.endswith(f"INFO    listener.test: hello world{suffix}")


# --- configure -----------------------------------------------------------------------------


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configure__json_lines_on_stderr_with_secrets_scrubbed(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    logsetup.configure(level="INFO", json_lines=True, secrets=[SECRET])

    logging.getLogger("listener.service").info(
        "opened %s", SECRET, extra={"action": "service_opened"}
    )
    logging.getLogger("listener.service").debug("below the level")

    err = capsys.readouterr().err
    assert len(root_logger.handlers) == 1
    assert root_logger.level == logging.INFO
    entry = json.loads(err)
    assert (entry["msg"], entry["action"], entry["logger"]) == (
        "opened ***",
        "service_opened",
        "listener.service",
    )
    assert err.count("\n") == 1
