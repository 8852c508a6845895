"""Fixtures of the Ray tests: a Ray cluster started here with ``ray start --head`` on the
loopback address (joined by the R2D2 and EfficientZero cluster tests), and a driver run in a
fresh Python process.

The cluster is started with ``--block`` in its own process group and stopped by signalling
that group (the processes this fixture started), not with ``ray stop``, which would stop every
Ray instance of the user on this shared machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
"""The repository root (the fresh driver imports ``tests.*`` from there)."""


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _driver_env() -> dict[str, str]:
    """The environment of a process joining :func:`ray_cluster`: no usage stats, no token
    authentication, no ``RAY_ADDRESS`` (the address is passed explicitly), the repository on
    ``PYTHONPATH``."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture
def ray_cluster() -> Iterator[str]:
    """``ray start --head`` on 127.0.0.1 with 2 CPUs; yields its ``HOST:PORT``.

    The cluster runs without token authentication (``RAY_AUTH_MODE=disabled``): Ray >= 2.5x
    turns it on when a token exists (a local ``ray.init`` creates ``~/.ray/auth_token``),
    and this driver process, whose Ray config was read at import, could not join it then.
    (A user of a token cluster starts the driver with ``RAY_AUTH_MODE=token``.)
    """
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray_bin = str(Path(sys.executable).parent / "ray")
    port = _free_loopback_port()
    temp_dir = tempfile.mkdtemp(prefix="rlt-ray-")  # short: Ray's socket paths must fit
    proc = subprocess.Popen(
        [ray_bin, "start", "--head", "--block",
         "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        env=_driver_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ray start --head exited ({proc.returncode}) or timed "
                                       "out before its port opened") from None
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group this fixture started
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        time.sleep(2)  # Ray's processes share the head's fate; then kill what is left
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def fresh_driver() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -c SCRIPT ARGS...`` from the repository root in a fresh process with
    :func:`_driver_env` (timeout 600 s); returns the completed process (text output).

    A joined run is driven from a fresh process, as a user's would be: a driver that already
    ran a local Ray (this pytest process, after the local Ray tests) keeps that instance's
    auth settings, which Ray reads once at import, and its actors on a cluster without auth
    die at start.
    """
    def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", script, *args], env=_driver_env(),
                              cwd=ROOT, capture_output=True, text=True, timeout=600)

    return run
