"""Replaying what scripts wrote to stderr: the ``redo-log`` command.

redo stores the stderr of each target's last build in the state database,
with the point in it where each build that the script asked for started. A
replay prints the target's log and, with ``recursive``, the logs of those
builds where they started, as the build itself showed them.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Set, TextIO, Tuple

from redors import _native
from redors.output import use_color

__all__ = ["LogOptions", "replay"]

_GREEN = "\033[32m"
_BOLD = "\033[1m"
_PLAIN = "\033[m"

FOLLOW_INTERVAL = 0.1
"""Seconds between two looks at a log that is still being written."""


@dataclass
class LogOptions:
    """What a replay shows."""

    recursive: bool = False
    """Also show the logs of the targets that each target's script built."""
    unchanged: bool = False
    """With ``recursive``, also show dependencies that were up to date."""
    follow: bool = False
    """Wait for a target that is being built, showing its output as it comes."""
    details: bool = True
    """Show the log text, not only the tree of build lines."""
    pretty: bool = True
    """Indent and color; without it, every line carries its target."""
    color: Optional[bool] = None
    output: TextIO = field(default_factory=lambda: sys.stdout)


@dataclass
class _Entry:
    is_target: bool
    building: bool
    built_run: int
    run: int
    content: bytes
    children: List[Tuple[int, str]]
    live: Optional[str]
    deps: List[str]


def _load(top: str, key: str) -> Optional[_Entry]:
    found = _native.target_log(top, key)
    if found is None:
        return None
    is_target, building, built_run, log, deps = found
    if log is None:
        return _Entry(is_target, building, built_run, 0, b"", [], None, [os.fspath(dep) for dep in deps])
    run, content, children, live = log
    return _Entry(
        is_target,
        building,
        built_run,
        run,
        bytes(content),
        [(offset, os.fspath(child)) for offset, child in children],
        os.fspath(live) if live is not None else None,
        [os.fspath(dep) for dep in deps],
    )


class _Replay:
    def __init__(self, top: str, cwd: str, options: LogOptions) -> None:
        self.top = top
        self.cwd = cwd
        self.options = options
        self.color = options.pretty and use_color(options.output, options.color)
        self.last_header = ""
        self.shown: Set[str] = set()
        """Targets whose log this replay printed: each appears once, where
        it first comes, although several targets may depend on it."""

    def key(self, name: str) -> str:
        """The database key of a target named relative to the current directory."""
        path = os.path.normpath(os.path.join(self.cwd, name))
        relative = os.path.relpath(path, self.top)
        return path if relative.startswith("..") else relative

    def display(self, key: str) -> str:
        return os.path.relpath(os.path.join(self.top, key), self.cwd)

    def write(self, line: str) -> None:
        self.options.output.write(line + "\n")
        self.options.output.flush()

    def header(self, key: str, depth: int) -> None:
        self.last_header = key
        name = self.display(key)
        if not self.options.pretty:
            self.write(f"redo {name}")
        elif self.color:
            self.write(f"{_GREEN}redo{_PLAIN} {'  ' * depth} {_BOLD}{name}{_PLAIN}")
        else:
            self.write(f"redo {'  ' * depth} {name}")

    def text(self, key: str, data: bytes) -> None:
        if not self.options.details or not data:
            return
        # As during the build: a line that does not come from the target of
        # the build line above it names its target.
        plain = self.options.pretty and key == self.last_header
        prefix = "" if plain else f"[{self.display(key)}] "
        for line in data.decode("utf-8", "replace").splitlines():
            self.write(prefix + line)

    def show(self, key: str, depth: int) -> None:
        entry = _load(self.top, key)
        self.header(key, depth)
        self.shown.add(key)
        if entry is None:
            return
        marks = {child: offset for offset, child in reversed(entry.children)}
        events: List[Tuple[int, str]] = [(offset, child) for offset, child in entry.children]
        if self.options.recursive:
            for dep in entry.deps:
                if dep in marks or dep in self.shown:
                    continue
                dep_entry = _load(self.top, dep)
                if dep_entry is None or not dep_entry.is_target:
                    continue
                # Built while this target was checked, before its script ran.
                if self.options.unchanged or dep_entry.built_run == entry.built_run:
                    events.append((0, dep))
        events.sort(key=lambda event: event[0])
        position = 0
        for offset, child in events:
            self.text(key, entry.content[position:offset])
            position = max(position, offset)
            if self.options.recursive and child not in self.shown:
                self.show(child, depth + 1)
        self.text(key, entry.content[position:])

    def follow(self, key: str) -> None:
        """Prints a target's output as it comes while it is being built."""
        entry = _load(self.top, key)
        if entry is None or not entry.building or entry.live is None:
            return
        self.header(key, 0)
        self.shown.add(key)
        printed = 0
        pending = b""
        while entry is not None and entry.building and entry.live is not None:
            try:
                with open(entry.live, "rb") as live:
                    live.seek(printed)
                    data = live.read()
            except OSError:
                data = b""
            printed += len(data)
            pending += data
            if b"\n" in pending:
                complete, _, pending = pending.rpartition(b"\n")
                self.text(key, complete + b"\n")
            time.sleep(FOLLOW_INTERVAL)
            entry = _load(self.top, key)
        if entry is not None:
            self.text(key, pending + entry.content[printed:])


def replay(
    targets: List[str],
    top: str,
    cwd: str,
    options: LogOptions,
    error: Callable[[str], None],
) -> int:
    """Print the logs of ``targets``; returns the exit status."""
    session = _Replay(top, cwd, options)
    status = _native.EXIT["OK"]
    for name in targets:
        key = session.key(name)
        entry = _load(top, key)
        if entry is None or not entry.is_target:
            what = "a source file" if entry is not None else "not a target that redo has built"
            error(f"no log for '{name}': it is {what} (in the tree at {top})")
            status = _native.EXIT["FAILED"]
            continue
        if options.follow and entry.building:
            session.follow(key)
            if options.recursive:
                entry = _load(top, key)
                for _, child in entry.children if entry else []:
                    if child not in session.shown:
                        session.show(child, 1)
            continue
        session.show(key, 0)
    return status
