"""Finding the ``.do`` file that builds a target.

For a target ``dir/name.a.b`` the candidates are, in order:

* ``dir/name.a.b.do``
* ``dir/default.a.b.do``, ``dir/default.b.do``, ``dir/default.do``
* the same ``default`` files in each parent directory, up to ``/``.

Every ``default`` candidate of a directory is tried before any of its parent,
so a project embedded in another keeps its own rules. The script runs in the
directory of its ``.do`` file with ``$1`` the target's path relative to that
directory, and ``$2`` that path without the extension that a
``default.EXT.do`` matched (``$2`` equals ``$1`` otherwise).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple

__all__ = ["Candidate", "DoMatch", "candidates", "find", "resolve_for_engine"]


@dataclass(frozen=True)
class Candidate:
    """A ``.do`` file that could build a target, with the arguments it gets."""

    dofile: str
    """Absolute path of the ``.do`` file."""
    arg1: str
    """``$1``: the target relative to the ``.do`` file's directory."""
    arg2: str
    """``$2``: ``$1`` without the extension matched by ``default.EXT.do``."""


@dataclass(frozen=True)
class DoMatch:
    """The outcome of a search: the chosen ``.do`` file and what was tried."""

    found: Optional[Candidate]
    """The first candidate that exists, or None."""
    missing: List[str] = field(default_factory=list)
    """Candidates tried before it (all of them when none exists)."""


def _extension_splits(name: str) -> Iterator[Tuple[str, str]]:
    """Yield ``(basename, extension)`` pairs, the longest extension first."""
    parts = name.split(".")
    for cut in range(1, len(parts) + 1):
        extension = ".".join(parts[cut:])
        yield ".".join(parts[:cut]), ("." + extension if extension else "")


def candidates(target: str) -> Iterator[Candidate]:
    """Yield every ``.do`` candidate of an absolute target path, in search order."""
    target = os.path.normpath(target)
    directory, name = os.path.split(target)
    yield Candidate(os.path.join(directory, name + ".do"), name, name)
    if name.endswith(".do"):
        # A .do file is a dependency of every target it builds: a catch-all
        # default.do must not rebuild it when it is deleted or edited.
        return
    subdir = ""
    while True:
        for basename, extension in _extension_splits(name):
            yield Candidate(
                os.path.join(directory, "default" + extension + ".do"),
                os.path.join(subdir, name),
                os.path.join(subdir, basename),
            )
        parent, last = os.path.split(directory)
        if parent == directory:
            return
        subdir = os.path.join(last, subdir) if subdir else last
        directory = parent


def find(target: str) -> DoMatch:
    """Search the ``.do`` file of an absolute target path."""
    missing: List[str] = []
    for candidate in candidates(target):
        if os.path.isfile(candidate.dofile):
            return DoMatch(candidate, missing)
        missing.append(candidate.dofile)
    return DoMatch(None, missing)


def resolve_for_engine(target: str) -> Tuple[Optional[str], str, str, List[str]]:
    """Search like :func:`find`, in the tuple form that the engine expects:
    ``(dofile or None, $1, $2, missing candidates)``."""
    match = find(target)
    if match.found is None:
        return None, "", "", match.missing
    found = match.found
    return found.dofile, found.arg1, found.arg2, match.missing
