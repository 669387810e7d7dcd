"""Terminal output of a run: one line per target built, warnings and errors.

The engine reports events; :class:`TerminalReporter` prints them on stderr,
in color when stderr is a terminal and ``NO_COLOR`` is not set.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, TextIO

from redors import _native

__all__ = ["TerminalReporter", "use_color"]

KINDS = _native.EVENT_KINDS

_GREEN = "\033[32m"
_YELLOW = "\033[33m"
_RED = "\033[31m"
_BOLD = "\033[1m"
_DIM = "\033[2m"
_PLAIN = "\033[m"


def use_color(stream: TextIO, force: Optional[bool] = None) -> bool:
    """Decide whether to color output: ``force`` wins, then ``NO_COLOR``,
    then whether the stream is a terminal that is not ``dumb``."""
    if force is not None:
        return force
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    return hasattr(stream, "isatty") and stream.isatty()


class TerminalReporter:
    """Prints engine events, as the engine's ``reporter`` callback."""

    def __init__(self, stream: Optional[TextIO] = None, color: Optional[bool] = None, command: str = "redo") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.color = use_color(self.stream, color)
        self.command = command

    def _paint(self, code: str, text: str) -> str:
        return f"{code}{text}{_PLAIN}" if self.color else text

    def __call__(self, kind: int, target: str, depth: int, message: str) -> None:
        """Print one event."""
        if kind == KINDS["BUILD"]:
            indent = "  " * depth
            line = f"{self._paint(_GREEN, 'redo')} {indent} {self._paint(_BOLD, target)}"
        elif kind == KINDS["ERROR"]:
            line = f"{self._paint(_RED, 'redo: error:')} {message}"
        elif kind in (KINDS["WARNING"], KINDS["BACKGROUND"]):
            line = f"{self._paint(_YELLOW, 'redo: warning:')} {message}"
        elif kind == KINDS["LOCK"]:
            line = self._paint(_DIM, f"redo: lock: {message}")
        else:
            line = self._paint(_DIM, f"redo: {message}")
        self.stream.write(line + "\n")
        self.stream.flush()

    def error(self, message: str) -> None:
        """Print an error that did not come from the engine."""
        self.stream.write(f"{self._paint(_RED, self.command + ': error:')} {message}\n")
        self.stream.flush()
