"""The public Python API: build targets and ask about a tree's state."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable, List, Mapping, Optional, Sequence

from redors import _native, dofiles
from redors.config import Settings, cache_root, check_top

__all__ = [
    "BuildResult",
    "Reporter",
    "build",
    "find_top",
    "inner_commands_dir",
    "out_of_date",
    "sources",
    "targets",
    "whichdo",
]

Reporter = Callable[[int, str, int, str, int], None]
"""Receives engine events: ``(kind, target, depth, message, count)``; the
kinds are the values of ``redors._native.EVENT_KINDS``. A reporter with a
``tick_interval_ms`` attribute above 0 also gets a ``TICK`` event that often,
and one with a ``close()`` method has it called when the run ends."""

ENV = _native.ENV
EXIT = _native.EXIT


@dataclass
class BuildResult:
    """How a build ended."""

    status: int
    """Exit status, as the ``redo`` command would return it."""
    failed: List[str] = field(default_factory=list)
    """Targets that failed, relative to the directory the build ran in."""

    @property
    def ok(self) -> bool:
        """Whether every requested target is up to date."""
        return self.status == EXIT["OK"]


def inside_build(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Tell whether this process runs inside a ``.do`` script of a build."""
    variables = os.environ if environ is None else environ
    return bool(variables.get(ENV["ENGINE"])) and bool(variables.get(ENV["JOB"]))


def inner_commands_dir() -> str:
    """Unpack the native inner commands (once) and return their directory."""
    root = cache_root()
    try:
        return os.fspath(_native.install_client(root))
    except OSError:
        fallback = cache_root({"HOME": "/"})
        if fallback == root:
            raise
        return os.fspath(_native.install_client(fallback))


def find_top(cwd: Optional[str] = None, targets: Sequence[str] = ()) -> str:
    """Return the top of the tree for a build of ``targets`` started in ``cwd``.

    ``REDORS_TOP`` wins when set; otherwise the search starts at the deepest
    directory holding ``cwd`` and every target, and goes up to the nearest
    directory with ``.redo/`` or a version-control root, without climbing into
    ``$HOME`` or ``/``. Raises SettingError when ``REDORS_TOP`` names no
    directory.
    """
    cwd = os.path.abspath(os.getcwd() if cwd is None else cwd)
    explicit = os.environ.get(ENV["TOP"]) or None
    if explicit is not None:
        explicit = check_top(explicit)
    return _native.find_top(cwd, list(targets), explicit, os.environ.get("HOME") or None)


def build(
    targets: Sequence[str] = ("all",),
    *,
    force: bool = True,
    cwd: Optional[str] = None,
    settings: Optional[Settings] = None,
    reporter: Optional[Reporter] = None,
) -> BuildResult:
    """Build ``targets`` as ``redo`` does, or as ``redo-ifchange`` does when
    ``force`` is False.

    Names are relative to ``cwd`` (default: the current directory). Inside a
    ``.do`` script the request goes to the running build, through the native
    inner command, and only the status comes back.

    Raises TypeError when ``targets`` is a single string, and SettingError
    when ``REDORS_TOP`` names no directory.
    """
    if isinstance(targets, (str, bytes)):
        raise TypeError(f"targets must be a sequence of names, not the single name {targets!r}")
    cwd = os.path.abspath(os.getcwd() if cwd is None else cwd)
    command = "redo" if force else "redo-ifchange"
    if inside_build():
        program = os.path.join(inner_commands_dir(), command)
        status = subprocess.run([program, "--", *targets], cwd=cwd, check=False).returncode
        return BuildResult(status)
    if reporter is None:
        from redors.output import TerminalReporter

        reporter = TerminalReporter()
    settings = settings if settings is not None else Settings.from_environment()
    top = find_top(cwd, targets)
    try:
        status, failed = _native.run(
            top=top,
            startdir=cwd,
            targets=list(targets),
            force=force,
            resolver=dofiles.resolve_for_engine,
            reporter=reporter,
            # Recorded as text: a name that is not UTF-8 shows with U+FFFD.
            command=" ".join([command, *targets]).encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
            env=list(os.environ.items()),
            client_dir=inner_commands_dir(),
            python=sys.executable,
            jobs=settings.jobs,
            keep_going=settings.keep_going,
            xtrace=settings.xtrace,
            verbose=settings.verbose,
            debug=settings.debug,
            wait_background=settings.wait_background,
            use_pidfd=settings.use_pidfd,
            debug_locks=settings.debug_locks,
            shuffle=settings.shuffle,
            log=settings.log,
            status_interval_ms=int(getattr(reporter, "tick_interval_ms", 0)),
        )
    finally:
        close = getattr(reporter, "close", None)
        if close is not None:
            close()
    return BuildResult(status, [os.fspath(path) for path in failed])


def whichdo(target: str, cwd: Optional[str] = None) -> dofiles.DoMatch:
    """Return the ``.do`` search for ``target``: the file found, if any, and
    the candidates tried before it."""
    cwd = os.path.abspath(os.getcwd() if cwd is None else cwd)
    return dofiles.find(os.path.normpath(os.path.join(cwd, target)))


def _listing(kind: str, top: Optional[str]) -> List[str]:
    top = find_top() if top is None else top
    if kind == "ood":
        found = _native.out_of_date(top, dofiles.resolve_for_engine)
    else:
        found = _native.list_files(top, kind == "targets")
    return [os.fspath(path) for path in found]


def targets(top: Optional[str] = None) -> List[str]:
    """Return the absolute paths of every target redo has built in the tree."""
    return _listing("targets", top)


def sources(top: Optional[str] = None) -> List[str]:
    """Return the absolute paths of every source file redo has seen in the tree."""
    return _listing("sources", top)


def out_of_date(top: Optional[str] = None) -> List[str]:
    """Return the absolute paths of the targets the next build would rebuild."""
    return _listing("ood", top)
