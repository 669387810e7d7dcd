"""Settings of a run, from command-line options and the environment.

Environment variables, each overridden by the matching option:

``REDORS_TOP``
    The top of the tree (the directory that holds ``.redo/``), instead of
    searching for it.
``REDORS_CACHE_DIR``
    Where the inner commands are unpacked; default
    ``$XDG_CACHE_HOME/redors`` or ``~/.cache/redors``.
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

__all__ = ["Settings", "cache_root", "env_flag"]

ENV = _native.ENV


def env_flag(environ: Mapping[str, str], name: str) -> bool:
    """Tell whether an environment variable is set to a true value."""
    return environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Settings:
    """Options of one run."""

    jobs: int = 1
    keep_going: bool = False
    xtrace: bool = False
    verbose: bool = False
    debug: bool = False
    wait_background: bool = False
    use_pidfd: bool = True

    @classmethod
    def from_environment(cls, environ: Optional[Mapping[str, str]] = None) -> Settings:
        """Read the defaults that the environment sets."""
        environ = os.environ if environ is None else environ
        return cls(
            wait_background=env_flag(environ, ENV["WAIT_BACKGROUND"]),
            use_pidfd=not env_flag(environ, ENV["NO_PIDFD"]),
        )


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
