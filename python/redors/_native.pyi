"""Type stubs of the redors extension module (built from rust/python)."""

import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

_Path = Union[str, os.PathLike[str]]

VERSION: str
PROTOCOL_VERSION: int
SCHEMA_VERSION: int
STATE_DIR: str
DB_FILE: str
COMMANDS: List[str]
CLIENT_HASH: str
EXIT: Dict[str, int]
ENV: Dict[str, str]
EVENT_KINDS: Dict[str, int]

class RedoError(Exception): ...
class StateError(RedoError): ...
class EngineError(RedoError): ...

def run(
    *,
    top: _Path,
    startdir: _Path,
    targets: Sequence[_Path],
    force: bool,
    resolver: Callable[[str], Tuple[Optional[str], str, str, List[str]]],
    reporter: Callable[[int, str, int, str, int], None],
    command: str,
    env: Sequence[Tuple[str, str]],
    client_dir: Optional[_Path] = None,
    python: Optional[str] = None,
    jobs: Optional[int] = None,
    keep_going: bool = False,
    xtrace: bool = False,
    verbose: bool = False,
    debug: bool = False,
    wait_background: bool = False,
    use_pidfd: bool = True,
    debug_locks: bool = False,
    shuffle: bool = False,
    log: bool = True,
    status_interval_ms: int = 0,
) -> Tuple[int, List[str]]: ...
def find_top(
    cwd: _Path, targets: Sequence[_Path], explicit: Optional[_Path] = None, home: Optional[_Path] = None
) -> str: ...
def up_to_date(top: _Path, cwd: _Path, targets: Sequence[_Path]) -> bool: ...
def list_files(top: _Path, targets: bool) -> List[str]: ...
def out_of_date(top: _Path, resolver: Callable[[str], Tuple[Optional[str], str, str, List[str]]]) -> List[str]: ...
def install_client(root: _Path) -> str: ...
def target_log(
    top: _Path, key: _Path
) -> Optional[Tuple[bool, bool, int, Optional[Tuple[int, bytes, List[Tuple[int, str]], Optional[str]]], List[str]]]: ...
