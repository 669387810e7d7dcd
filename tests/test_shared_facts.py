"""The Python front and the Rust core agree on the facts they share."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import redors
from redors import _native, cli

from conftest import Tree

ROOT = Path(__file__).resolve().parent.parent


def test_console_scripts_match_commands() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert sorted(project["project"]["scripts"]) == sorted(_native.COMMANDS)
    assert sorted(cli.COMMANDS) == sorted(_native.COMMANDS)


def test_version_matches_cargo_manifest() -> None:
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    assert redors.__version__ == manifest["workspace"]["package"]["version"]


def test_version_option_prints_version(tree: Tree) -> None:
    result = tree.run("redo", "--version")
    assert result.returncode == 0
    assert redors.__version__ in result.stdout


def test_exit_codes_are_distinct() -> None:
    codes = _native.EXIT
    assert codes["OK"] == 0
    assert len({codes["OK"], codes["FAILED"], codes["USAGE"], codes["STATE"]}) == 4
    assert codes["INTERRUPTED"] == codes["SIGNAL_BASE"] + 2
    assert codes["TERMINATED"] == codes["SIGNAL_BASE"] + 15


def test_usage_error_exit_code(tree: Tree) -> None:
    result = tree.run("redo", "--no-such-option")
    assert result.returncode == _native.EXIT["USAGE"]


def test_failure_exit_code(tree: Tree) -> None:
    tree.write("bad.do", "exit 4\n")
    assert tree.run("redo", "bad").returncode == _native.EXIT["FAILED"]


def test_native_commands_are_installed(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDORS_CACHE_DIR", str(cache_dir))
    directory = Path(redors.inner_commands_dir())
    assert directory.parent == cache_dir
    for name in _native.COMMANDS:
        program = directory / name
        assert program.exists(), name
        assert program.resolve().read_bytes()[:4] == b"\x7fELF"


def test_package_runs_as_module(tree: Tree) -> None:
    tree.write("all.do", "echo from-module\n")
    result = subprocess.run(
        [sys.executable, "-m", "redors", "redo", "all"],
        cwd=tree.root,
        env=tree.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert tree.read("all") == "from-module\n"
