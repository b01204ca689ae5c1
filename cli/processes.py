"""Running audiencesync's own processes side by side (``up`` and ``demo``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from types import TracebackType


class ProcessGroup:
    """Child processes started together and stopped together (SIGTERM, then SIGKILL)."""

    def __init__(self, commands: Mapping[str, Sequence[str]], quiet: bool = False) -> None:
        self.commands = commands
        self.quiet = quiet
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> ProcessGroup:
        for name, command in self.commands.items():
            output = subprocess.DEVNULL if self.quiet else None
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *command],
                env=os.environ.copy(),
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_any(self) -> str:
        """Block until one child exits; returns its name."""
        while True:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    return name
            time.sleep(0.5)

    def stop(self, timeout: float = 15.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
