"""Settings of a run, from command-line options and the environment.

Environment variables, each overridden by the matching option:

``REDORS_TOP``
    The top of the tree (the directory that holds ``.redo/``), instead of
    searching for it.
``REDORS_CACHE_DIR``
    Where the inner commands are unpacked; default
    ``$XDG_CACHE_HOME/redors`` or ``~/.cache/redors``.
``REDORS_JOBS=N``
    How many scripts run at once when ``-j`` is not given (default 1);
    ``auto`` means one per CPU.
``REDORS_WAIT_BACKGROUND=1``
    Like ``--wait-background``.
``REDORS_NO_PIDFD=1``
    Watch job processes through SIGCHLD instead of pidfds (for testing the
    fallback that kernels older than Linux 5.3 need).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Mapping, Optional

from redors import _native

__all__ = ["FLAG_VALUES", "MAX_JOBS", "SettingError", "Settings", "cache_root", "check_top", "env_flag", "parse_jobs"]

ENV = _native.ENV

MAX_JOBS = 4096
"""Maximum number of scripts at once, because a jobserver pipe contains one byte per extra job."""

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
FLAG_VALUES = _TRUE + _FALSE
"""The values that a flag variable accepts, after case folding."""


class SettingError(ValueError):
    """An environment variable of redors has an invalid value."""


def env_flag(environ: Mapping[str, str], name: str) -> bool:
    """Tell whether an environment variable is set to a true value.

    Raises SettingError for a value that is neither true nor false.
    """
    value = environ.get(name, "")
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingError(f"invalid {name}={value!r}: expected 1 or 0")


def check_top(value: str) -> str:
    """Return the top that ``REDORS_TOP`` names, as an absolute path.

    Raises SettingError when it is not an existing directory.
    """
    if not os.path.isdir(value):
        raise SettingError(f"invalid {ENV['TOP']}={value!r}: expected an existing directory")
    return os.path.abspath(value)


@dataclass
class Settings:
    """Options of one run."""

    jobs: Optional[int] = None
    """Most scripts at once; None uses the jobserver of a make that started
    redo, or else runs one script at a time."""
    keep_going: bool = False
    xtrace: bool = False
    verbose: bool = False
    debug: bool = False
    wait_background: bool = False
    use_pidfd: bool = True
    debug_locks: bool = False
    shuffle: bool = False
    log: bool = True
    """Capture each script's stderr, show it a line at a time and keep it
    for redo-log; when False, scripts write to the terminal directly."""

    @classmethod
    def from_environment(cls, environ: Optional[Mapping[str, str]] = None) -> Settings:
        """Read the defaults that the environment sets.

        Raises SettingError when ``REDORS_JOBS`` is not a positive number or
        ``auto``, or a flag is neither 1 nor 0.
        """
        environ = os.environ if environ is None else environ
        return cls(
            jobs=parse_jobs(environ[ENV["JOBS"]]) if environ.get(ENV["JOBS"]) else None,
            wait_background=env_flag(environ, ENV["WAIT_BACKGROUND"]),
            use_pidfd=not env_flag(environ, ENV["NO_PIDFD"]),
        )


def parse_jobs(value: str) -> int:
    """Parse a job count: a positive number, or ``auto`` for one per CPU."""
    text = value.strip().lower()
    if text == "auto":
        return os.cpu_count() or 1
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if not 1 <= jobs <= MAX_JOBS:
        raise SettingError(f"invalid {ENV['JOBS']}={value!r}: expected a number of jobs from 1 to {MAX_JOBS}, or auto")
    return jobs


def cache_root(environ: Optional[Mapping[str, str]] = None) -> str:
    """Return the directory that holds the unpacked inner commands."""
    environ = os.environ if environ is None else environ
    explicit = environ.get(ENV["CACHE_DIR"])
    if explicit:
        return explicit
    xdg = environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "redors")
    home = environ.get("HOME") or os.path.expanduser("~")
    if home and home != "/" and os.access(home, os.W_OK):
        return os.path.join(home, ".cache", "redors")
    return os.path.join(tempfile.gettempdir(), f"redors-{os.getuid()}")
