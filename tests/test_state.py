"""The state database: where it lives (the top of the tree), when it is
created, how redo treats a damaged or newer one, and the listings that read
it (redo-targets, redo-sources, redo-ood)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import List

import pytest

from conftest import Tree

DATABASE = ".redo/redors.db"


def write_default_do(tree: Tree) -> None:
    """Write a default.do that builds any target from its own name."""
    tree.write(
        "default.do",
        """
        echo "$1" >> "$RUNLOG"
        echo "$1" > $3
    """,
    )


def lines(text: str) -> List[str]:
    return text.splitlines()


# When the database is created.


def test_first_build_creates_database(tree: Tree) -> None:
    write_default_do(tree)

    tree.redo("x")

    assert tree.path(DATABASE).is_file()
    assert tree.read("x") == "x\n"


def test_missing_target_creates_no_state(tree: Tree) -> None:
    result = tree.run("redo", "nosuch")

    assert result.returncode == 1, str(result)
    assert not tree.exists(".redo")


@pytest.mark.parametrize("command", ["redo-targets", "redo-sources", "redo-ood"])
def test_listing_empty_tree_creates_nothing(tree: Tree, command: str) -> None:
    result = tree.run(command)

    assert result.returncode == 0, str(result)
    assert result.stdout == ""
    assert not tree.exists(".redo")


# Finding the top of the tree.


def test_parent_redo_directory_is_top(tree: Tree) -> None:
    write_default_do(tree)
    tree.path(".redo").mkdir()
    tree.path("sub").mkdir()

    tree.redo("x", cwd=tree.path("sub"))

    assert tree.read("sub/x") == "sub/x\n"
    assert tree.path(DATABASE).is_file()
    assert not tree.exists("sub/.redo")


@pytest.mark.parametrize("marker", [".git", ".hg", ".svn"])
def test_version_control_root_is_top(tree: Tree, marker: str) -> None:
    write_default_do(tree)
    tree.path(marker).mkdir()
    tree.path("sub").mkdir()

    tree.redo("x", cwd=tree.path("sub"))

    assert tree.path(DATABASE).is_file()
    assert not tree.exists("sub/.redo")


@pytest.mark.parametrize("command", ["redo", "redo-ifchange"])
def test_checkout_below_current_directory_is_top(tree: Tree, command: str) -> None:
    # Typed in the parent of a checkout, with no marker above it.
    tree.write("proj/t.do", "redo-ifchange in\ncat in > $3\n")
    tree.write("proj/in", "one\n")
    tree.path("proj/.git").mkdir()
    tree.run("redo", "t", cwd=tree.path("proj"))
    tree.touch_later("proj/in", "two\n")

    result = tree.run(command, "proj/t")

    assert result.returncode == 0, str(result)
    assert "source" not in result.stderr, str(result)
    assert tree.read("proj/t") == "two\n"
    assert not tree.exists(".redo")


def test_start_directory_is_top_without_markers(tree: Tree) -> None:
    write_default_do(tree)
    tree.path("sub").mkdir()

    tree.redo("x", cwd=tree.path("sub"))

    assert tree.path("sub").joinpath(DATABASE).is_file()
    assert not tree.exists(".redo")


def test_home_redo_directory_never_used(tree: Tree) -> None:
    home = Path(tree.env["HOME"])
    assert tree.root.parent == home
    (home / ".redo").mkdir()
    write_default_do(tree)

    tree.redo("x")

    assert tree.path(DATABASE).is_file()
    assert list((home / ".redo").iterdir()) == []


def test_home_redo_directory_ignored_below(tree: Tree) -> None:
    home = Path(tree.env["HOME"])
    (home / ".redo").mkdir()
    write_default_do(tree)
    tree.path("sub").mkdir()

    tree.redo("x", cwd=tree.path("sub"))

    assert tree.path("sub").joinpath(DATABASE).is_file()
    assert not tree.exists(".redo")
    assert list((home / ".redo").iterdir()) == []


def test_top_search_starts_at_common_parent(tree: Tree) -> None:
    write_default_do(tree)
    tree.path("a").mkdir()
    tree.path("b").mkdir()

    tree.redo("x", "../b/y", cwd=tree.path("a"))

    assert tree.read("a/x") == "a/x\n"
    assert tree.read("b/y") == "b/y\n"
    assert tree.path(DATABASE).is_file()
    assert not tree.exists("a/.redo")
    assert not tree.exists("b/.redo")


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_redors_top_sets_top(tree: Tree, relative: bool) -> None:
    write_default_do(tree)
    tree.path(".git").mkdir()
    tree.path("state").mkdir()
    top = "state" if relative else str(tree.path("state"))

    tree.redo("x", env={"REDORS_TOP": top})

    assert tree.read("x") == "x\n"
    assert tree.path("state").joinpath(DATABASE).is_file()
    assert not tree.exists(".redo")


def test_top_and_subdirectory_share_database(tree: Tree) -> None:
    write_default_do(tree)
    tree.path(".git").mkdir()
    tree.path("sub").mkdir()

    tree.redo("sub/x")
    tree.ifchange("x", cwd=tree.path("sub"))

    assert tree.runs() == ["sub/x"]
    assert not tree.exists("sub/.redo")
    assert lines(tree.run("redo-targets").stdout) == ["sub/x"]
    assert lines(tree.run("redo-targets", cwd=tree.path("sub")).stdout) == ["x"]


# A damaged or newer database is reported and kept.


def build_once(tree: Tree) -> Path:
    """Build a small tree and return the path of its database."""
    tree.write("all.do", "redo-ifchange a\ncat a > $3\n")
    tree.write("a.do", "echo a > $3\n")
    tree.redo("all")
    return tree.path(DATABASE)


def damage(database: Path, garbage: bytes) -> None:
    """Overwrite a database with garbage, and its write-ahead log, which
    redors keeps between runs and which would otherwise still supply the
    pages it holds."""
    database.write_bytes(garbage)
    log = database.with_name(database.name + "-wal")
    if log.exists():
        log.write_bytes(garbage)


@pytest.mark.parametrize(
    "command",
    [
        ["redo", "all"],
        ["redo-ifchange", "all"],
        ["redo-targets"],
        ["redo-ood"],
    ],
)
def test_damaged_database_left_untouched(tree: Tree, command: List[str]) -> None:
    database = build_once(tree)
    garbage = bytes(range(256)) * 16
    damage(database, garbage)

    result = tree.run(*command)

    assert result.returncode == 3, str(result)
    assert "damaged" in result.stderr, str(result)
    assert str(database) in result.stderr, str(result)
    assert database.read_bytes() == garbage
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["redo", "all"], ["redo-ifchange", "all"], ["redo-sources"]])
def test_newer_database_left_untouched(tree: Tree, command: List[str]) -> None:
    database = build_once(tree)
    connection = sqlite3.connect(database)
    try:
        connection.execute("PRAGMA user_version = 99")
        connection.commit()
    finally:
        connection.close()
    before = database.read_bytes()

    result = tree.run(*command)

    assert result.returncode == 3, str(result)
    assert "newer" in result.stderr, str(result)
    assert database.read_bytes() == before
    assert "Traceback" not in result.stderr


# The listings.


def write_small_project(tree: Tree) -> None:
    """Write all, which needs a and b, and a, which is built from the source
    file src."""
    tree.write("all.do", "redo-ifchange a b\ncat a b > $3\n")
    tree.write("a.do", "redo-ifchange src\ncat src > $3\n")
    tree.write("b.do", "echo b > $3\n")
    tree.write("src", "first\n")


def test_listings_after_build(tree: Tree) -> None:
    write_small_project(tree)
    tree.redo("all")

    targets = tree.run("redo-targets")
    sources = tree.run("redo-sources")
    out_of_date = tree.run("redo-ood")

    assert targets.returncode == 0, str(targets)
    assert sorted(lines(targets.stdout)) == ["a", "all", "b"]
    assert sources.returncode == 0, str(sources)
    assert sorted(lines(sources.stdout)) == ["a.do", "all.do", "b.do", "src"]
    assert out_of_date.returncode == 0, str(out_of_date)
    assert out_of_date.stdout == ""


def test_ood_lists_dependents_of_change(tree: Tree) -> None:
    write_small_project(tree)
    tree.redo("all")
    tree.touch_later("src", "second\n")

    out_of_date = tree.run("redo-ood")

    assert out_of_date.returncode == 0, str(out_of_date)
    assert sorted(lines(out_of_date.stdout)) == ["a", "all"]

    tree.ifchange("all")
    assert tree.run("redo-ood").stdout == ""
    assert tree.read("all") == "second\nb\n"


def test_ood_skips_targets_without_dofile(tree: Tree) -> None:
    # A target that no .do file builds any more becomes a source at the next
    # run, and so do the targets that need only it: none is out of date.
    write_small_project(tree)
    tree.write("report.do", "redo-ood > $3\n")
    tree.redo("all")
    tree.path("a.do").unlink()
    tree.path("b.do").unlink()
    tree.touch_later("all.do", "redo-ifchange a b\ncat b a > $3\n")

    top_level = tree.run("redo-ood")
    tree.redo("report")

    assert top_level.returncode == 0, str(top_level)
    assert lines(top_level.stdout) == ["all"], str(top_level)
    # Inside its own build, report is still out of date.
    assert lines(tree.read("report")) == ["all", "report"]
    tree.ifchange("all")
    assert tree.run("redo-ood").stdout == ""
    assert tree.read("all") == "b\nfirst\n"


def test_listings_relative_to_current_directory(tree: Tree) -> None:
    write_small_project(tree)
    tree.path(".git").mkdir()
    tree.write("sub/x.do", "echo x > $3\n")
    tree.redo("all", "sub/x")
    tree.touch_later("src", "second\n")
    sub = tree.path("sub")

    targets = tree.run("redo-targets", cwd=sub)
    out_of_date = tree.run("redo-ood", cwd=sub)

    assert sorted(lines(targets.stdout)) == ["../a", "../all", "../b", "x"]
    assert sorted(lines(out_of_date.stdout)) == ["../a", "../all"]
    assert "../src" in lines(tree.run("redo-sources", cwd=sub).stdout)


def test_listings_work_inside_do(tree: Tree) -> None:
    write_small_project(tree)
    tree.write(
        "tools/report.do",
        """
        redo-targets > targets.txt
        redo-sources > sources.txt
        redo-ood > ood.txt
        echo listed > $3
    """,
    )
    tree.redo("all")
    tree.touch_later("src", "second\n")

    tree.redo("tools/report")

    targets = lines(tree.read("tools/targets.txt"))
    sources = lines(tree.read("tools/sources.txt"))
    out_of_date = lines(tree.read("tools/ood.txt"))
    for name in ("../a", "../all", "../b"):
        assert name in targets, targets
    assert "../src" in sources, sources
    assert "../a" in out_of_date, out_of_date
    assert "../all" in out_of_date, out_of_date
    assert "../b" not in out_of_date, out_of_date
