"""redors: a redo build system with a Rust core.

The commands (``redo``, ``redo-ifchange``, ...) are the usual way in; this
package also builds from Python::

    import redors
    result = redors.build(["all"])
    if not result.ok:
        print("failed:", result.failed)
"""

from __future__ import annotations

import importlib

from redors import _native
from redors._native import EngineError, RedoError, StateError

# Not typing.TYPE_CHECKING: importing typing would cost the commands more
# than everything else they load before a no-op answer.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from redors.api import BuildResult, build, find_top, inner_commands_dir, out_of_date, sources, targets, whichdo
    from redors.config import SettingError, Settings
    from redors.dofiles import Candidate, DoMatch

__version__: str = _native.VERSION

# The API loads on first use, so that the commands, which import this
# package, start without it when they have nothing to build.
_LAZY = {
    "BuildResult": "redors.api",
    "build": "redors.api",
    "find_top": "redors.api",
    "inner_commands_dir": "redors.api",
    "out_of_date": "redors.api",
    "sources": "redors.api",
    "targets": "redors.api",
    "whichdo": "redors.api",
    "Settings": "redors.config",
    "SettingError": "redors.config",
    "Candidate": "redors.dofiles",
    "DoMatch": "redors.dofiles",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'redors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BuildResult",
    "Candidate",
    "DoMatch",
    "EngineError",
    "RedoError",
    "SettingError",
    "Settings",
    "StateError",
    "__version__",
    "build",
    "find_top",
    "inner_commands_dir",
    "out_of_date",
    "sources",
    "targets",
    "whichdo",
]
