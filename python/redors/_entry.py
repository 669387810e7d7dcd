"""Console-script entry points.

Each installed command starts here. Inside a ``.do`` script, where the build
engine's address is in the environment, the command hands over to the native
inner command at once, without importing click. At the top level, a
``redo-ifchange`` whose targets are all up to date ends after one read of the
database; everything else runs the click CLI.
"""

from __future__ import annotations

import os
import sys

from redors import _native

TYPE_CHECKING = False  # see redors/__init__.py
if TYPE_CHECKING:
    from typing import NoReturn, Sequence

__all__ = ["run_command"]

INNER_COMMANDS = frozenset(_native.COMMANDS) - {"redo-log"}

# The same limits as redors.config.MAX_JOBS and FLAG_VALUES, which this
# module does not import: that would cost the fast path several
# milliseconds. tests/test_noop.py checks that they agree.
_MAX_JOBS = 4096
_FLAG_VALUES = ("1", "true", "yes", "on", "", "0", "false", "no", "off")
"""Commands that a build answers for its scripts; the others run here."""


def run_command(name: str, args: Sequence[str]) -> NoReturn:
    """Run the redors command ``name`` with ``args``."""
    engine = os.environ.get(_native.ENV["ENGINE"])
    if engine and os.environ.get(_native.ENV["JOB"]) and name in INNER_COMMANDS:
        from redors.api import inner_commands_dir

        # The native command talks to the build; when that build is over, it
        # starts a new one through this front, without these variables.
        program = os.path.join(inner_commands_dir(), name)
        os.execv(program, [program, *args])
    if name == "redo-ifchange" and _nothing_to_do(args):
        sys.exit(0)
    from redors import cli

    cli.main(name, args)
    sys.exit(0)


def _nothing_to_do(args: Sequence[str]) -> bool:
    """Tell whether a top-level ``redo-ifchange args`` would build nothing and
    print nothing. In doubt (an option, an odd name, a setting to validate, a
    problem with the state) the answer is False, and the full command runs
    instead and reports any problem."""
    targets = list(args) or ["all"]
    if any(not target or target.startswith("-") or "\n" in target for target in targets):
        return False
    jobs = os.environ.get(_native.ENV["JOBS"], "").strip().lower()
    if jobs and jobs != "auto" and not (jobs.isdigit() and 0 < int(jobs) <= _MAX_JOBS):
        return False
    flags = (_native.ENV["WAIT_BACKGROUND"], _native.ENV["NO_PIDFD"])
    if any(os.environ.get(name, "").strip().lower() not in _FLAG_VALUES for name in flags):
        return False
    explicit_top = os.environ.get(_native.ENV["TOP"])
    if explicit_top and not os.path.isdir(explicit_top):
        return False
    try:
        cwd = os.getcwd()
        explicit = os.environ.get(_native.ENV["TOP"]) or None
        top = _native.find_top(cwd, targets, explicit, os.environ.get("HOME") or None)
        return _native.up_to_date(top, cwd, targets)
    except (OSError, _native.RedoError):
        return False


def _main(name: str) -> NoReturn:
    run_command(name, sys.argv[1:])


def redo() -> NoReturn:
    """``redo``"""
    _main("redo")


def redo_ifchange() -> NoReturn:
    """``redo-ifchange``"""
    _main("redo-ifchange")


def redo_ifcreate() -> NoReturn:
    """``redo-ifcreate``"""
    _main("redo-ifcreate")


def redo_always() -> NoReturn:
    """``redo-always``"""
    _main("redo-always")


def redo_stamp() -> NoReturn:
    """``redo-stamp``"""
    _main("redo-stamp")


def redo_whichdo() -> NoReturn:
    """``redo-whichdo``"""
    _main("redo-whichdo")


def redo_flush_cache() -> NoReturn:
    """``redo-flush-cache``"""
    _main("redo-flush-cache")


def redo_log() -> NoReturn:
    """``redo-log``"""
    _main("redo-log")


def redo_ood() -> NoReturn:
    """``redo-ood``"""
    _main("redo-ood")


def redo_targets() -> NoReturn:
    """``redo-targets``"""
    _main("redo-targets")


def redo_sources() -> NoReturn:
    """``redo-sources``"""
    _main("redo-sources")
