"""Fixtures for the behaviour tests.

Every test runs the installed commands (the ``redo`` beside the Python that
runs pytest) as real processes, in a temporary tree of real files. Nothing
of redors is imported or faked here, so the tests see what a user sees.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Union

import pytest

BIN_DIR = Path(sys.executable).parent
TIMEOUT = 60

LIST_FDS = "import os; print(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))"
"""A Python one-liner that prints the descriptors open in its own process."""


@dataclass
class Result:
    """What a command did."""

    args: List[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout and stderr together, for messages."""
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return f"$ {' '.join(self.args)}\n[exit {self.returncode}]\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


class Tree:
    """A temporary directory tree with helpers to write files and run redo."""

    def __init__(self, root: Path, env: Dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.runlog = root.parent / f"{root.name}.runs"
        self.runlog.write_text("")
        self.env["RUNLOG"] = str(self.runlog)

    def path(self, name: str) -> Path:
        """Absolute path of a file in the tree."""
        return self.root / name

    def write(self, name: str, text: str, mode: Optional[int] = None) -> Path:
        """Write a file (dedented), creating its directory."""
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        if mode is not None:
            path.chmod(mode)
        return path

    def read(self, name: str) -> str:
        """Content of a file in the tree."""
        return self.path(name).read_text()

    def exists(self, name: str) -> bool:
        """Whether a path (even a dangling symlink) exists in the tree."""
        return os.path.lexists(self.path(name))

    def touch_later(self, name: str, text: Optional[str] = None) -> None:
        """Change a file (or only its times) so its stamp surely differs."""
        path = self.path(name)
        time.sleep(0.01)
        if text is not None:
            path.write_text(textwrap.dedent(text).lstrip("\n"))
        else:
            path.touch()
        stamp = path.stat()
        later = stamp.st_mtime_ns + 1_000_000_000
        os.utime(path, ns=(later, later))

    def run(
        self,
        *args: Union[str, Path],
        cwd: Optional[Union[str, Path]] = None,
        env: Optional[Dict[str, str]] = None,
        stdin: Optional[str] = None,
        timeout: float = TIMEOUT,
    ) -> Result:
        """Run a command (found on the test PATH) and return its result."""
        argv = [str(arg) for arg in args]
        full_env = dict(self.env)
        if env:
            full_env.update(env)
        completed = subprocess.run(
            argv,
            cwd=str(cwd if cwd is not None else self.root),
            env=full_env,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(argv, completed.returncode, completed.stdout, completed.stderr)

    def redo(self, *args: Union[str, Path], **kwargs: object) -> Result:
        """Run ``redo`` and expect success."""
        result = self.run("redo", *args, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 0, str(result)
        return result

    def ifchange(self, *args: Union[str, Path], **kwargs: object) -> Result:
        """Run ``redo-ifchange`` and expect success."""
        result = self.run("redo-ifchange", *args, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 0, str(result)
        return result

    def runs(self) -> List[str]:
        """Lines that scripts appended to ``$RUNLOG``, one per build by convention."""
        return self.runlog.read_text().splitlines()

    def clear_runs(self) -> None:
        """Forget the lines of ``$RUNLOG``."""
        self.runlog.write_text("")


def fd_listing(tree: Tree) -> str:
    """Run LIST_FDS as the test's own child, started with close_fds: the
    descriptors any process started here has, 0, 1, 2 and the one that
    os.listdir opens for itself."""
    return subprocess.run(
        ["python3", "-c", LIST_FDS],
        env=tree.env,
        cwd=tree.root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT,
    ).stdout


def is_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def kill_group(pgid: int) -> None:
    """Kill a process group, if it still exists."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the unpacked inner commands, shared by every test."""
    return tmp_path_factory.mktemp("redors-cache")


@pytest.fixture(scope="session")
def base_env(cache_dir: Path) -> Dict[str, str]:
    """The environment of every command: the installed redors first on PATH,
    and nothing left from a surrounding build."""
    redo = BIN_DIR / "redo"
    if not redo.exists():
        pytest.exit(f"redors is not installed beside {sys.executable}: {redo} is missing", returncode=2)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REDO", "MAKE", "MFLAGS")) and name not in ("JOBS", "CDPATH", "ENV")
    }
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["REDORS_CACHE_DIR"] = str(cache_dir)
    env["LC_ALL"] = "C.UTF-8"
    env["NO_COLOR"] = "1"
    return env


@pytest.fixture
def tree(tmp_path: Path, base_env: Dict[str, str]) -> Iterator[Tree]:
    """An empty project directory (its own top: nothing above it has .redo/)."""
    root = tmp_path / "proj"
    root.mkdir()
    env = dict(base_env)
    env["HOME"] = str(tmp_path)
    yield Tree(root, env)
