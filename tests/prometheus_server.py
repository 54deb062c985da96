"""A real Prometheus (Debian's ``prometheus`` package) on a free 127.0.0.1 port, scraping one
target every second with the shipped alert rules loaded, its TSDB in a temporary folder."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import wait_until
from tests.synapse_server import free_port

JOB = "archiver-db"  # the job name deploy/prometheus-alerts.yml expects
STOP_TIMEOUT_S = 10.0


class PrometheusServer:
    def __init__(self, binary: str, workdir: Path, *, target: str, rule_files: list[Path]):
        self.binary = binary
        self.workdir = workdir
        self.target = target
        self.rule_files = rule_files
        self.port = free_port()
        self._proc: asyncio.subprocess.Process | None = None
        self._client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=5)

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    async def __aenter__(self) -> PrometheusServer:
        config = self.workdir / "prometheus.yml"
        # JSON is YAML: no YAML writer needed.
        config.write_text(json.dumps(self._config(), indent=2))
        with self.log_path.open("wb") as log:
            self._proc = await asyncio.create_subprocess_exec(
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        try:
            await wait_until(self._ready, timeout_s=30, what="Prometheus /-/ready")
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        await self._client.aclose()
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's vector: [{"metric": {...}, "value": [ts, "text"]}, ...]."""
        result: list[dict[str, Any]] = (await self._api("query", query=promql))["result"]
        return result

    async def value(self, promql: str) -> float | None:
        """The one sample an instant query returns, or None when it returns none."""
        series = await self.query(promql)
        assert len(series) <= 1, series
        return float(series[0]["value"][1]) if series else None

    async def values_by(self, promql: str, *labels: str) -> dict[tuple[str, ...], float]:
        """An instant query's samples keyed by the values of ``labels``."""
        series = await self.query(promql)
        return {tuple(s["metric"][k] for k in labels): float(s["value"][1]) for s in series}

    async def rule_state(self, name: str) -> str:
        """inactive, pending or firing, as Prometheus last evaluated the alert ``name``."""
        states = {rule["name"]: rule["state"] for rule in await self.rules()}
        return str(states[name])

    async def rules(self) -> list[dict[str, Any]]:
        groups = (await self._api("rules"))["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def _api(self, path: str, **params: str) -> Any:
        answer = await self._client.get(f"/api/v1/{path}", params=params)
        answer.raise_for_status()
        body = answer.json()
        assert body["status"] == "success", body
        return body["data"]

    async def _ready(self) -> bool:
        if self._proc is not None and self._proc.returncode is not None:
            raise AssertionError(f"prometheus exited early:\n{self.log()}")
        try:
            return (await self._client.get("/-/ready")).status_code == 200
        except httpx.TransportError:
            return False

    def _config(self) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [self.target]}]}],
        }
