"""Run the stub on its own: ``python -m tests.supabase_stub --db-url postgresql://... --port 54321``
(the benchmark runs it in a separate process, so its CPU does not count against the archiver)."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from tests.supabase_stub import DEFAULT_KEY, SupabaseStub


async def _main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="supabase-stub-") as root:
        stub = SupabaseStub(args.db_url, Path(args.root or root), key=args.key, port=args.port)
        await stub.start()
        print(f"listening on {stub.url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await stub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.supabase_stub")
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", default=DEFAULT_KEY)
    parser.add_argument("--root", default=None)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(_main(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
