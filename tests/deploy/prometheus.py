"""Debian's Prometheus and promtool for the monitoring tests: found (or the test fails where CI requires them), a
Prometheus started on a configuration, and its HTTP API."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRE_ENV = "TRITONGEN_REQUIRE_PROMETHEUS"


def binary(name: str) -> str:
    """`prometheus` or `promtool` on PATH; skipped where missing, a failure where CI requires them."""
    found = shutil.which(name)
    if found is None:
        reason = f"no {name} binary (apt-get install prometheus; scripts/test.sh does it where it runs as root)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}; {REQUIRE_ENV}=1, so this is a failure, not a skip", pytrace=False)
        pytest.skip(reason)
    return found


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@contextlib.contextmanager
def running(config: Path, port: int, targets: int = 1) -> Iterator[str]:
    """Prometheus on `config` at 127.0.0.1:`port` until the block ends, once it has scraped `targets` targets;
    yields its address."""
    folder = config.parent
    address = f"127.0.0.1:{port}"
    log = (folder / "prometheus.log").open("w")
    process = subprocess.Popen([binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
                                f"--web.listen-address={address}"], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if len(query(address, "up == 1")) >= targets:
                    break
            except OSError:
                pass
            assert process.poll() is None, f"prometheus exited: {(folder / 'prometheus.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"prometheus did not scrape {targets} target(s) within 60 s"
            time.sleep(0.3)
        yield address
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def api(address: str, path: str, **params: str) -> object:
    url = f"http://{address}/api/v1/{path}" + (("?" + urllib.parse.urlencode(params)) if params else "")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def query(address: str, promql: str) -> list[dict]:
    return api(address, "query", query=promql)["result"]  # type: ignore[index]


def value(address: str, promql: str) -> float | None:
    """The single value of an instant query, None when it returns nothing."""
    result = query(address, promql)
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None
