"""redors: a redo build system with a Rust core.

The commands (``redo``, ``redo-ifchange``, ...) are the usual way in; this
package also builds from Python::

    import redors
    result = redors.build(["all"])
    if not result.ok:
        print("failed:", result.failed)
"""

from redors._native import VERSION as __version__
from redors._native import EngineFailure, RedoError, StateError
from redors.api import BuildResult, build, find_top, inner_commands_dir, out_of_date, sources, targets, whichdo
from redors.config import Settings
from redors.dofiles import Candidate, DoMatch

__all__ = [
    "BuildResult",
    "Candidate",
    "DoMatch",
    "EngineFailure",
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
