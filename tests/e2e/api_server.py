"""A real `loyalty api` process for tests: a free port, ready when /healthz answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

LOYALTY = str(Path(sys.executable).parent / "loyalty")
START_DEADLINE_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def api_process(env: dict, log_path: Path, **extra_env: str):
    """Start `loyalty api` and yield its base URL once /healthz answers 200; stop it after."""
    port = free_port()
    with open(log_path, "w") as output:  # a file: a full pipe would block the server
        proc = subprocess.Popen(
            [LOYALTY, "api", "--host", "127.0.0.1", "--port", str(port)],
            env={**env, **extra_env},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"loyalty api exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"loyalty api did not answer /healthz within {START_DEADLINE_S} s")
            time.sleep(0.05)  # polling a condition, not waiting a fixed time
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
