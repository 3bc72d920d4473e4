"""Child-process plumbing for embedded services: free ports, readiness polling, clean stops, no orphans."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cdc_repair.errors import DevServiceError

_PR_SET_PDEATHSIG = 1


def free_port(preferred: int | None = None) -> int:
    """`preferred` if it is free on 127.0.0.1, else any free port the kernel hands out."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise DevServiceError("no free TCP port on 127.0.0.1")


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the parent dies, so a killed test run leaves no orphans."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str], log_path: Path, *, detach: bool, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a service process writing to `log_path`. `detach=False` ties its life to this process."""
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop the child ourselves
            preexec_fn=None if detach else _die_with_parent,
            env=env,
            cwd=cwd,
        )
    except OSError as exc:
        raise DevServiceError(f"cannot start {argv[0]}: {exc.strerror}") from None
    finally:
        log.close()


def wait_until(ready: Callable[[], bool], *, timeout_s: float, what: str, alive: Callable[[], bool],
               log_path: Path) -> None:
    """Poll `ready` until true; fail fast with the log's tail if the process died or time ran out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive():
            raise DevServiceError(f"{what} exited during start-up; last log lines: {tail(log_path)}")
        time.sleep(0.1)
    raise DevServiceError(f"{what} not ready after {timeout_s:.0f}s; last log lines: {tail(log_path)}")


def tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
        return state != "Z"
    return True


def stop_pid(pid: int, *, timeout_s: float = 20.0) -> None:
    """SIGTERM, wait, then SIGKILL; a process that is already gone is fine."""
    for sig, wait_s in ((signal.SIGCONT, 0.0), (signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0
