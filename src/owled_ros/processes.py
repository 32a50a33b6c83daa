"""Child processes of a run (node, player, recorder, simulator bridge), confined to this machine's
DDS, logged to files, and stopped with SIGINT (then SIGKILL) whatever happens."""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from pathlib import Path

from owled_ros.errors import OwledError

LOG_TAIL_LINES = 15


def confined_env() -> dict[str, str]:
    """The children's environment; refuses to start DDS processes that could talk off this machine."""
    env = dict(os.environ)
    if env.get("ROS_AUTOMATIC_DISCOVERY_RANGE") != "LOCALHOST" or not env.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        raise OwledError(
            "DDS is not confined to this machine: set ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and "
            "FASTDDS_DEFAULT_PROFILES_FILE (source scripts/env.sh), or use --offline"
        )
    env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def log_tail(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    return "\n".join(lines[-LOG_TAIL_LINES:])


class ChildProcesses:
    """The node, recorder and player processes; whatever is still running at the end is stopped."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = confined_env()
        self.procs: dict[str, subprocess.Popen] = {}
        self.lines: queue.Queue[str] = queue.Queue()

    def start(self, name: str, args: list[str], pipe_stdout: bool = False) -> subprocess.Popen:
        log = open(self.work / f"{name}.log", "w")
        # A child inherits this thread's blocked signals, and a Ray worker blocks SIGINT: a child
        # started there would never see the SIGINT that stops it. Unblocked for the fork only.
        blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        try:
            proc = subprocess.Popen(
                args, env=self.env, stdout=subprocess.PIPE if pipe_stdout else log, stderr=log, text=True, start_new_session=True
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            log.close()
        if pipe_stdout:
            threading.Thread(target=self._pump, args=(proc,), daemon=True).start()
        self.procs[name] = proc
        return proc

    def _pump(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.put(line)

    def check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise OwledError(f"{name} exited early with code {proc.returncode}; last lines of {self.work / name}.log:\n{log_tail(self.work / f'{name}.log')}")

    def stop(self, name: str, timeout_s: float) -> int:
        """SIGINT, then SIGKILL after timeout_s; the exit code."""
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name, 10.0)
