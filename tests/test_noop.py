"""A top-level ``redo-ifchange`` with nothing to do.

The command answers such a call from one read of the state database,
without starting a build (docs/guide.md, "How the commands are
installed"). These tests check that it does so, and that every doubt still
goes to a real run.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Dict

import pytest

from conftest import Tree


def write_project(tree: Tree) -> None:
    tree.write("src", "one\n")
    tree.write(
        "c.do",
        """
        redo-ifchange src
        cat src
        echo "$1" >> "$RUNLOG"
    """,
    )
    for name in ("a", "b"):
        tree.write(
            f"{name}.do",
            """
            redo-ifchange c
            cat c
            echo "$1" >> "$RUNLOG"
        """,
        )
    tree.write("all.do", "redo-ifchange a b\n")
    tree.write("sub/keep", "kept\n")


def without_cli(tree: Tree) -> Dict[str, str]:
    """An environment in which importing click, and so the full command,
    fails: a command that succeeds there answered without a build."""
    tree.write("shadow/click/__init__.py", "raise ImportError('redors loaded its CLI')\n")
    return {"PYTHONPATH": str(tree.path("shadow"))}


def test_noop_answers_without_a_build(tree: Tree) -> None:
    write_project(tree)
    tree.ifchange("all")
    tree.clear_runs()
    env = without_cli(tree)

    quiet = tree.ifchange("all", env=env)
    tree.ifchange(env=env)
    tree.ifchange("../all", cwd=tree.path("sub"), env=env)
    tree.ifchange("a", "src", env=env)

    assert quiet.stdout == quiet.stderr == ""
    assert tree.runs() == []


def test_noop_trusts_settled_stamps_after(tree: Tree) -> None:
    # Right after a build, a file's stamp is too recent to trust alone, so
    # a check hashes it. Once the stamps are old enough, the no-op check
    # records that, and later checks need not hash the files again.
    write_project(tree)
    tree.ifchange("all")
    time.sleep(2.2)

    assert tree.ifchange("all", env=without_cli(tree)).returncode == 0

    database = sqlite3.connect(f"file:{tree.path('.redo/redors.db')}?mode=ro", uri=True)
    try:
        rows = database.execute("SELECT path, mtime_ns, ctime_ns, seen_ns FROM files WHERE kind = 1").fetchall()
    finally:
        database.close()
    racy = [bytes(path).decode() for path, mtime, ctime, seen in rows if max(mtime, ctime) + 2_000_000_000 > seen]
    assert sorted(racy) == [], rows


def test_change_after_noop_still_builds(tree: Tree) -> None:
    write_project(tree)
    tree.ifchange("all")
    tree.ifchange("all")
    tree.clear_runs()
    tree.touch_later("src", "two\n")

    refused = tree.run("redo-ifchange", "all", env=without_cli(tree))
    tree.ifchange("all")

    assert "redors loaded its CLI" in refused.stderr, str(refused)
    assert sorted(tree.runs()) == ["a", "b", "c"]


def test_dependency_rebuilt_through_another_target(tree: Tree) -> None:
    write_project(tree)
    tree.ifchange("all")
    tree.touch_later("src", "two\n")
    tree.ifchange("a")
    tree.clear_runs()

    # c changed when a was brought up to date; b was built against the old c.
    tree.ifchange("a", "b")

    assert tree.runs() == ["b"]
    assert tree.read("b") == "two\n"


def test_options_and_settings_still_checked(tree: Tree) -> None:
    write_project(tree)
    tree.ifchange("all")

    bad_jobs = tree.run("redo-ifchange", "all", env={"REDORS_JOBS": "many"})
    with_option = tree.run("redo-ifchange", "-d", "all", env=without_cli(tree))

    assert bad_jobs.returncode == 2, str(bad_jobs)
    assert "REDORS_JOBS" in bad_jobs.stderr
    assert "redors loaded its CLI" in with_option.stderr, str(with_option)


@pytest.mark.parametrize(
    "name, value",
    [
        ("REDORS_JOBS", "99999999999999999999"),
        ("REDORS_JOBS", "5000"),
        ("REDORS_WAIT_BACKGROUND", "maybe"),
        ("REDORS_NO_PIDFD", "2"),
        ("REDORS_TOP", "/nonexistent/top"),
    ],
)
@pytest.mark.parametrize("command", ["redo", "redo-ifchange"])
def test_invalid_settings_exit_two(tree: Tree, command: str, name: str, value: str) -> None:
    write_project(tree)
    tree.ifchange("all")

    result = tree.run(command, "all", env={name: value})

    assert result.returncode == 2, str(result)
    assert f"invalid {name}=" in result.stderr, str(result)
    assert "Traceback" not in result.stderr, str(result)
    assert not Path(value).exists()


def test_listing_rejects_missing_top(tree: Tree) -> None:
    write_project(tree)
    tree.ifchange("all")

    result = tree.run("redo-targets", env={"REDORS_TOP": "relative/missing"})

    assert result.returncode == 2, str(result)
    assert "invalid REDORS_TOP=" in result.stderr, str(result)
    assert not tree.exists("relative")


def test_fast_path_limits_match_settings() -> None:
    from redors import _entry, config

    assert _entry._MAX_JOBS == config.MAX_JOBS
    assert sorted(_entry._FLAG_VALUES) == sorted(config.FLAG_VALUES)


def test_modified_target_still_warns(tree: Tree) -> None:
    write_project(tree)
    tree.ifchange("all")
    tree.touch_later("b", "by hand\n")

    first = tree.ifchange("all")
    second = tree.ifchange("all")

    for result in (first, second):
        assert "'b' was changed outside redo" in result.stderr, str(result)
    assert tree.read("b") == "by hand\n"
