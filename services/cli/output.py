"""Where the commands print: one console (rich), wide enough not to cut tables when piped."""

from __future__ import annotations

from rich.console import Console

console = Console()
