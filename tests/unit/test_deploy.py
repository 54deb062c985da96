"""deploy/: the systemd unit, the Grafana dashboard and the Prometheus rules parse, and every
metric they name is one the archiver exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from listener.ops import metrics
from tests import needs

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\barchiver_[a-z_]+\b")
SUFFIXES = ("_bucket", "_count", "_sum")


def exported_names() -> set[str]:
    m = metrics.Metrics()
    m.dependency_up.labels("bridge").set(1)  # labelled families appear once used
    m.latency.observe(0.1)
    text = generate_latest(m.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"} | {
        line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")
    }


def referenced(text: str) -> set[str]:
    return {name for name in METRIC.findall(text) if name != "archiver_db"}


def test_dashboard__is_json_and_names_only_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    unknown = referenced("\n".join(exprs)) - exported_names()
    assert not unknown, f"dashboard names metrics the archiver does not export: {unknown}"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_alerts__parse_and_name_only_exported_metrics() -> None:
    yaml = pytest.importorskip("yaml")
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
    alerts = {r["alert"]: r for group in rules["groups"] for r in group["rules"]}
    assert {
        "ArchiverDown",
        "ArchiverLagGrowing",
        "ArchiverSweepRecoveringRows",
        "ArchiverFailuresPending",
        "ArchiverMediaMissing",
    } <= set(alerts)
    for rule in alerts.values():
        assert rule["expr"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
    unknown = referenced("\n".join(r["expr"] for r in alerts.values())) - exported_names()
    assert not unknown, f"alerts name metrics the archiver does not export: {unknown}"


def test_alerts__promtool_check_rules() -> None:
    promtool = needs.program("promtool", package="prometheus")
    result = subprocess.run(
        [promtool, "check", "rules", str(DEPLOY / "prometheus-alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rules = len(re.findall(r"^\s*- alert:", (DEPLOY / "prometheus-alerts.yml").read_text(), re.M))
    assert f"SUCCESS: {rules} rules found" in result.stdout


def test_unit__systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    unit = (DEPLOY / "archiver-db.service").read_text()
    for needed in (
        "Type=notify",
        "WatchdogSec=",
        "TimeoutStopSec=",
        "Restart=on-failure",
        "EnvironmentFile=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=",
        "ReadOnlyPaths=",
        "PrivateTmp=yes",
        "User=archiver",
    ):
        assert needed in unit
    # The install path does not exist on a test machine: verify a copy that runs /bin/true.
    copy = tmp_path / "archiver-db.service"
    copy.write_text(re.sub(r"^ExecStart=\S+", "ExecStart=/bin/true", unit, flags=re.M))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "archiver-db.service" not in result.stderr, result.stderr


def test_unit__stop_timeout_outlasts_the_drain() -> None:
    unit = (DEPLOY / "archiver-db.service").read_text()
    stop_s = int(re.search(r"^TimeoutStopSec=(\d+)s$", unit, re.M).group(1))  # type: ignore[union-attr]
    default_grace_s = 20 + 5  # SHUTDOWN_GRACE_S default plus the final cursor write
    assert stop_s > default_grace_s
