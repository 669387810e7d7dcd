"""redors: a redo build system with a Rust core.

The commands (``redo``, ``redo-ifchange``, ...) are the usual way in; this
package also builds from Python::

    import redors
    result = redors.build(["all"])
    if not result.ok:
        print("failed:", result.failed)
"""

from redors import _native
from redors._native import EngineError, RedoError, StateError
from redors.api import BuildResult, build, find_top, inner_commands_dir, out_of_date, sources, targets, whichdo
from redors.config import Settings
from redors.dofiles import Candidate, DoMatch

__version__: str = _native.VERSION

__all__ = [
    "BuildResult",
    "Candidate",
    "DoMatch",
    "EngineError",
    "RedoError",
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
