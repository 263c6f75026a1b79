"""A command run in a pseudo-terminal, as a person at a terminal runs it (what rich sees as
a terminal: bars drawn), its screen output returned raw."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from pathlib import Path


def run_in_pty(
    args: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 180, columns: int = 120
) -> tuple[int, str]:
    """Exit status and everything written to the terminal (escape sequences included)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(
        args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env={**env, "TERM": "xterm-256color"}
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
        return proc.wait(timeout=10), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)
