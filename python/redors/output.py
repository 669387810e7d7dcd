"""Terminal output of a run: one line per target built, what scripts write to
stderr, warnings and errors, and a status line.

The engine reports events; :class:`TerminalReporter` prints them on stderr.
Each line a script writes is printed whole, prefixed with ``[target]`` when
several scripts run at once or when it does not come from the target of the
build line just above it (a script that resumes after its dependencies were
built), so two scripts never share a line and no line is credited to the
wrong target. On a
terminal, a status line at the bottom shows how many targets are built, which
ones are building and the time since the run started.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Dict, Optional, TextIO

from redors import _native

__all__ = ["TerminalReporter", "use_color"]

KINDS = _native.EVENT_KINDS

_GREEN = "\033[32m"
_YELLOW = "\033[33m"
_RED = "\033[31m"
_BOLD = "\033[1m"
_DIM = "\033[2m"
_PLAIN = "\033[m"
_CLEAR_LINE = "\r\033[K"

STATUS_INTERVAL_MS = 250
"""How often the engine reports time when a status line is shown."""


def _is_terminal(stream: TextIO) -> bool:
    return hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM") != "dumb"


def use_color(stream: TextIO, force: Optional[bool] = None) -> bool:
    """Decide whether to color output: ``force`` wins, then ``NO_COLOR``,
    then whether the stream is a terminal that is not ``dumb``."""
    if force is not None:
        return force
    if os.environ.get("NO_COLOR"):
        return False
    return _is_terminal(stream)


class TerminalReporter:
    """Prints engine events, as the engine's ``reporter`` callback.

    ``status`` shows the status line (default: on a terminal), ``details``
    shows what scripts write to stderr, ``pretty`` indents and colors the
    output (without it every script line carries its target), and
    ``debug_pids`` adds the process id of each script to its build line.
    """

    def __init__(
        self,
        stream: Optional[TextIO] = None,
        color: Optional[bool] = None,
        command: str = "redo",
        status: Optional[bool] = None,
        details: bool = True,
        pretty: bool = True,
        debug_pids: bool = False,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.pretty = pretty
        self.color = pretty and use_color(self.stream, color)
        self.command = command
        self.status = pretty and (_is_terminal(self.stream) if status is None else status)
        self.details = details
        self.debug_pids = debug_pids
        self.running: Dict[str, int] = {}
        self.last_built = ""
        self.done = 0
        self.queued = 0
        self.started_at = time.monotonic()
        self._status_shown = False

    @property
    def tick_interval_ms(self) -> int:
        """How often the engine should report time: only for a status line."""
        return STATUS_INTERVAL_MS if self.status else 0

    def _paint(self, code: str, text: str) -> str:
        return f"{code}{text}{_PLAIN}" if self.color else text

    def __call__(self, kind: int, target: str, depth: int, message: str, count: int = 0) -> None:
        """Print one event."""
        if kind == KINDS["TICK"]:
            self.queued = count
        elif kind == KINDS["DONE"]:
            self.running.pop(target, None)
            self.done += 1
        elif kind == KINDS["BUILD"]:
            self.running[target] = count
            self.last_built = target
            self._write(self._build_line(target, depth, count))
        elif kind == KINDS["OUTPUT"]:
            if self.details:
                # A line reads as the output of the last build line above it,
                # so a line of any other target carries that target's name.
                plain = self.pretty and count <= 1 and target == self.last_built
                self._write(message if plain else f"[{target}] {message}")
        elif kind == KINDS["ERROR"]:
            self._write(f"{self._paint(_RED, 'redo: error:')} {message}")
        elif kind in (KINDS["WARNING"], KINDS["BACKGROUND"]):
            self._write(f"{self._paint(_YELLOW, 'redo: warning:')} {message}")
        elif kind == KINDS["LOCK"]:
            self._write(self._paint(_DIM, f"redo: lock: {message}"))
        else:
            self._write(self._paint(_DIM, f"redo: {message}"))
        self._draw_status()

    def _build_line(self, target: str, depth: int, pid: int) -> str:
        suffix = f" [pid {pid}]" if self.debug_pids and pid else ""
        if not self.pretty:
            return f"redo {target}{suffix}"
        indent = "  " * depth
        return f"{self._paint(_GREEN, 'redo')} {indent} {self._paint(_BOLD, target)}{suffix}"

    def _write(self, line: str) -> None:
        if self._status_shown:
            self.stream.write(_CLEAR_LINE)
            self._status_shown = False
        self.stream.write(line + "\n")
        self.stream.flush()

    def _draw_status(self) -> None:
        if not self.status or not self.running:
            return
        total = self.done + len(self.running) + self.queued
        elapsed = time.monotonic() - self.started_at
        text = f"redo [{self.done}/{total}] {elapsed:.1f}s building: {' '.join(self.running)}"
        width = shutil.get_terminal_size((80, 24)).columns - 1
        if len(text) > width:
            text = text[: max(width - 3, 0)] + "..."
        self.stream.write(_CLEAR_LINE + self._paint(_DIM, text))
        self.stream.flush()
        self._status_shown = True

    def close(self) -> None:
        """Clear the status line at the end of the run."""
        if self._status_shown:
            self.stream.write(_CLEAR_LINE)
            self.stream.flush()
            self._status_shown = False

    def error(self, message: str) -> None:
        """Print an error that did not come from the engine."""
        self._write(f"{self._paint(_RED, self.command + ': error:')} {message}")
