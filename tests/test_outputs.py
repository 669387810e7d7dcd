"""How the output of a .do script becomes the target.

The target is what the script wrote to ``$3`` or to stdout. It replaces the
old target by a rename, and only when the script succeeded. No temporary
file outlives a build.
"""

import os
import stat
from typing import List

import pytest

from conftest import Tree

TEMP_SUFFIXES = (".redo3.tmp", ".redo1.tmp")


def listing(tree: Tree, directory: str = ".") -> List[str]:
    """List a directory of the tree like ``ls -A``, without redo's database."""
    return sorted(name for name in os.listdir(tree.path(directory)) if name != ".redo")


def temp_files(tree: Tree, directory: str = ".") -> List[str]:
    return [name for name in listing(tree, directory) if name.endswith(TEMP_SUFFIXES)]


def file_mode(tree: Tree, name: str) -> int:
    return stat.S_IMODE(os.lstat(tree.path(name)).st_mode)


def test_stdout_becomes_target(tree: Tree) -> None:
    tree.write("x.do", "echo from stdout\n")

    tree.redo("x")

    assert tree.read("x") == "from stdout\n"
    assert temp_files(tree) == []


def test_dollar3_becomes_target(tree: Tree) -> None:
    tree.write("x.do", 'echo from dollar3 > "$3"\n')

    tree.redo("x")

    assert tree.read("x") == "from dollar3\n"
    assert temp_files(tree) == []


def test_writing_both_is_error(tree: Tree) -> None:
    tree.write(
        "x.do",
        """
        echo to stdout
        echo to dollar3 > "$3"
    """,
    )
    before = listing(tree)

    result = tree.run("redo", "x")

    assert result.returncode == 1, str(result)
    assert "wrote to stdout and also created $3" in result.stderr
    assert ">&2" in result.stderr
    assert not tree.exists("x")
    assert listing(tree) == before


def test_writing_both_keeps_old_target(tree: Tree) -> None:
    tree.write("x.do", "echo old\n")
    tree.redo("x")
    tree.touch_later(
        "x.do",
        """
        echo to stdout
        echo to dollar3 > "$3"
    """,
    )
    before = listing(tree)

    result = tree.run("redo", "x")

    assert result.returncode == 1, str(result)
    assert "wrote to stdout and also created $3" in result.stderr
    assert tree.read("x") == "old\n"
    assert listing(tree) == before


FAILING_SCRIPTS = {
    "stdout": "echo new",
    "dollar3": 'echo new > "$3"',
    "directory": 'mkdir "$3"; echo new > "$3/inner"',
}


@pytest.mark.parametrize("write_to", sorted(FAILING_SCRIPTS))
def test_failure_keeps_old_target(tree: Tree, write_to: str) -> None:
    tree.write("x.do", "echo old\n")
    tree.redo("x")
    tree.touch_later(
        "x.do",
        f"""
        {FAILING_SCRIPTS[write_to]}
        exit 3
    """,
    )
    before = listing(tree)

    result = tree.run("redo", "x")

    assert result.returncode == 1, str(result)
    assert "redo: error: cannot build 'x': x.do failed with exit status 3" in result.stderr
    assert tree.read("x") == "old\n"
    assert listing(tree) == before


def test_failure_in_subdirectory_leaves_nothing(tree: Tree) -> None:
    tree.path("sub").mkdir()
    tree.write(
        "default.out.do",
        """
        echo partial
        echo partial > "$3"
        exit 2
    """,
    )
    top_before = listing(tree)
    sub_before = listing(tree, "sub")

    result = tree.run("redo", "sub/x.out")

    assert result.returncode == 1, str(result)
    assert "redo: error: cannot build 'sub/x.out': default.out.do failed with exit status 2" in result.stderr
    assert listing(tree) == top_before
    assert listing(tree, "sub") == sub_before


def test_old_target_readable_during_build(tree: Tree) -> None:
    tree.write("x.do", "echo old\n")
    tree.redo("x")
    tree.touch_later(
        "x.do",
        """
        cat "$1" >> "$RUNLOG"
        echo new
    """,
    )

    tree.redo("x")

    assert tree.runs() == ["old"]
    assert tree.read("x") == "new\n"


def test_new_target_replaces_by_rename(tree: Tree) -> None:
    tree.write("x.do", "echo old\n")
    tree.redo("x")
    tree.touch_later("x.do", "echo new\n")

    with open(tree.path("x")) as old_file:
        tree.redo("x")
        seen_through_old_handle = old_file.read()

    assert seen_through_old_handle == "old\n"
    assert tree.read("x") == "new\n"


def test_no_output_creates_no_file(tree: Tree) -> None:
    tree.write("x.do", 'echo "$1" >> "$RUNLOG"\n')

    tree.redo("x")

    assert tree.runs() == ["x"]
    assert not tree.exists("x")
    assert temp_files(tree) == []


def test_no_output_removes_stale_target(tree: Tree) -> None:
    tree.write("x.do", "echo old\n")
    tree.redo("x")
    tree.touch_later("x.do", 'echo "$1" >> "$RUNLOG"\n')

    tree.redo("x")

    assert tree.runs() == ["x"]
    assert not tree.exists("x")
    assert temp_files(tree) == []


def test_empty_dollar3_gives_empty_file(tree: Tree) -> None:
    tree.write("x.do", ': > "$3"\n')

    tree.redo("x")

    assert tree.exists("x")
    assert tree.read("x") == ""


@pytest.mark.parametrize(("umask", "mode"), [("022", 0o644), ("077", 0o600)])
@pytest.mark.parametrize("write_to", ["stdout", "dollar3"])
def test_target_mode_follows_umask(tree: Tree, umask: str, mode: int, write_to: str) -> None:
    redirect = "" if write_to == "stdout" else ' > "$3"'
    tree.write("x.do", f"echo content{redirect}\n")

    result = tree.run("sh", "-c", f"umask {umask}; redo x")

    assert result.returncode == 0, str(result)
    assert tree.read("x") == "content\n"
    assert file_mode(tree, "x") == mode


def test_dollar3_absent_at_start(tree: Tree) -> None:
    tree.write(
        "x.do",
        """
        if [ -e "$3" ] || [ -L "$3" ]; then echo present; else echo absent; fi
    """,
    )

    tree.redo("x")
    first = tree.read("x")
    tree.redo("x")
    second = tree.read("x")

    assert first == "absent\n"
    assert second == "absent\n"


def test_leftover_temp_removed_before_build(tree: Tree) -> None:
    tree.write(".x.redo3.tmp/leftover", "from a crashed build\n")
    tree.write(
        "x.do",
        """
        if [ -e "$3" ] || [ -L "$3" ]; then echo present; else echo absent; fi
    """,
    )

    tree.redo("x")

    assert tree.read("x") == "absent\n"
    assert temp_files(tree) == []


def test_dollar3_as_directory(tree: Tree) -> None:
    tree.write(
        "x.do",
        """
        mkdir "$3"
        echo one > "$3/one"
        echo two > "$3/two"
    """,
    )

    tree.redo("x")

    assert tree.path("x").is_dir()
    assert listing(tree, "x") == ["one", "two"]
    assert tree.read("x/one") == "one\n"
    assert temp_files(tree) == []


def test_dollar3_as_symlink(tree: Tree) -> None:
    tree.write("x.do", 'ln -s some/destination "$3"\n')

    tree.redo("x")

    assert tree.path("x").is_symlink()
    assert os.readlink(tree.path("x")) == "some/destination"
    assert temp_files(tree) == []


def test_rebuild_replaces_nonempty_directory(tree: Tree) -> None:
    tree.write("names", "a b c\n")
    tree.write(
        "x.do",
        """
        redo-ifchange names
        mkdir "$3" "$3/nested"
        for name in $(cat names); do echo "$name" > "$3/$name"; done
        echo deep > "$3/nested/deep"
    """,
    )
    tree.redo("x")
    tree.touch_later("names", "d e\n")

    tree.ifchange("x")

    assert listing(tree, "x") == ["d", "e", "nested"]
    assert tree.read("x/d") == "d\n"
    assert tree.read("x/nested/deep") == "deep\n"
    assert temp_files(tree) == []


def test_target_switches_file_and_directory(tree: Tree) -> None:
    tree.write("kind", "file\n")
    tree.write(
        "x.do",
        """
        redo-ifchange kind
        case "$(cat kind)" in
            dir) mkdir "$3"; echo inside > "$3/inner" ;;
            link) ln -s elsewhere "$3" ;;
            *) echo plain > "$3" ;;
        esac
    """,
    )

    tree.redo("x")
    assert tree.read("x") == "plain\n"

    tree.touch_later("kind", "dir\n")
    tree.ifchange("x")
    assert tree.path("x").is_dir()
    assert tree.read("x/inner") == "inside\n"

    tree.touch_later("kind", "file\n")
    tree.ifchange("x")
    assert tree.path("x").is_file()
    assert tree.read("x") == "plain\n"

    tree.touch_later("kind", "link\n")
    tree.ifchange("x")
    assert tree.path("x").is_symlink()
    assert os.readlink(tree.path("x")) == "elsewhere"

    tree.touch_later("kind", "dir\n")
    tree.ifchange("x")
    assert not tree.path("x").is_symlink()
    assert tree.read("x/inner") == "inside\n"
    assert temp_files(tree) == []


def test_symlink_target_follows_its_source(tree: Tree) -> None:
    tree.write("src", "one\n")
    tree.write(
        "x.do",
        """
        redo-ifchange src
        ln -s src "$3"
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.redo("x")

    # Only the file that the link points to changes. The link that redo made is
    # untouched, so x must be rebuilt and not kept as a hand-edited target.
    tree.touch_later("src", "two\n")
    result = tree.ifchange("x")

    assert "changed outside redo" not in result.stderr
    assert tree.runs() == ["x", "x"]
    assert os.readlink(tree.path("x")) == "src"


def test_writing_target_directly_fails(tree: Tree) -> None:
    tree.write("x.do", 'echo direct > "$1"\n')

    result = tree.run("redo", "x")

    assert result.returncode == 1, str(result)
    assert "changed the target file directly" in result.stderr
    assert "$3" in result.stderr
    assert temp_files(tree) == []


@pytest.mark.parametrize("command", ["redo", "redo-ifchange"])
def test_direct_write_fails_until_fixed(tree: Tree, command: str) -> None:
    # The file the script wrote is the build's doing, not a hand edit: a
    # second run must not keep it as a source and succeed.
    tree.write("x.do", 'echo direct > "$1"\n')
    assert tree.run("redo", "x").returncode == 1

    again = tree.run(command, "x")

    assert again.returncode == 1, str(again)
    assert "changed the target file directly" in again.stderr
    assert "changed outside redo" not in again.stderr
    assert tree.run("redo-ood").stdout.split() == ["x"]

    tree.touch_later("x.do", 'echo fixed > "$3"\n')
    fixed = tree.run(command, "x")

    assert fixed.returncode == 0, str(fixed)
    assert tree.read("x") == "fixed\n"
    assert "changed outside redo" not in fixed.stderr


def test_overwriting_old_target_directly_fails(tree: Tree) -> None:
    tree.write("x.do", "echo old\n")
    tree.redo("x")
    tree.touch_later("x.do", 'echo direct > "$1"\n')

    result = tree.run("redo", "x")

    assert result.returncode == 1, str(result)
    assert "changed the target file directly" in result.stderr
    assert "$3" in result.stderr
    assert temp_files(tree) == []
