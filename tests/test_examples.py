"""The bundled examples build and pass their own tests with the installed redo."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import Tree

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def copy_example(tree: Tree, name: str) -> None:
    """Copy an example's sources, without what a build in the checkout (the
    README's first command) left there: the example's .gitignore lists it."""
    ignored = (EXAMPLES / name / ".gitignore").read_text().splitlines()
    patterns = [line.lstrip("/") for line in ignored if line and not line.startswith("#")]
    shutil.copytree(EXAMPLES / name, tree.root, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*patterns))


def built(result_stderr: str) -> list[str]:
    """Targets that a run built, from its 'redo  NAME' lines."""
    return [line.split()[-1] for line in result_stderr.splitlines() if line.startswith("redo ")]


def test_calc_builds_and_passes_tests(tree: Tree) -> None:
    copy_example(tree, "calc")
    result = tree.redo("test")
    assert "all 17 checks passed" in result.stderr
    assert tree.run("./calc", "1+2*3").stdout == "7\n"


def test_calc_header_edit_rebuilds_users(tree: Tree) -> None:
    copy_example(tree, "calc")
    tree.redo("all")
    header = tree.read("eval.h")
    tree.touch_later("eval.h", header + "\n/* a comment */\n")
    result = tree.ifchange("all")
    assert sorted(built(result.stderr)) == ["eval.o", "main.o"]


def test_calc_version_change_reaches_program(tree: Tree) -> None:
    copy_example(tree, "calc")
    tree.redo("all")
    tree.touch_later("VERSION", "9.9.9\n")
    result = tree.ifchange("all")
    assert set(built(result.stderr)) == {"version.h", "main.o", "calc", "all"}
    assert "9.9.9" in tree.run("./calc", "--version").stdout


def test_calc_clean_removes_generated_files(tree: Tree) -> None:
    copy_example(tree, "calc")
    before = sorted(path.name for path in tree.root.iterdir())
    tree.redo("test")
    tree.redo("clean")
    after = sorted(path.name for path in tree.root.iterdir() if path.name != ".redo")
    assert after == before
