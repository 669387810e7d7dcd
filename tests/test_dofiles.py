"""Which .do file builds a target, and how redo runs it.

For target ``dir/name.a.b`` redo tries ``dir/name.a.b.do``, then
``dir/default.a.b.do``, ``dir/default.b.do`` and ``dir/default.do``, then the
same ``default*`` files in each parent directory. The script runs in its own
directory with ``$1`` (the target), ``$2`` (the target without the extension
that a ``default.EXT.do`` matched) and ``$3`` (a temporary output path).
"""

import os
import subprocess
from pathlib import Path
from typing import List

import pytest

from conftest import TIMEOUT, Tree

# A script that writes its own name, so the target shows which .do file built it.
IDENTIFY = 'echo "{name}"\n'

# A script that writes its arguments, one per line.
SHOW_ARGS = 'printf "%s\\n" "$1" "$2" "$3"\n'


def write_identifying_scripts(tree: Tree, names: List[str]) -> None:
    for name in names:
        tree.write(name, IDENTIFY.format(name=name))


def candidates_up_to_root(start: Path, cwd: Path, extensions: List[str]) -> List[str]:
    """List the default*.do candidates of start and each parent up to /, relative to cwd."""
    lines = []
    directory = start
    while True:
        for extension in extensions:
            lines.append(os.path.relpath(directory / f"default{extension}.do", cwd))
        if directory.parent == directory:
            return lines
        directory = directory.parent


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        (["sub/n.a.b.do", "sub/default.a.b.do", "sub/default.b.do", "sub/default.do"], "sub/n.a.b.do"),
        (["sub/default.a.b.do", "sub/default.b.do", "sub/default.do"], "sub/default.a.b.do"),
        (["sub/default.b.do", "sub/default.do"], "sub/default.b.do"),
        (["sub/default.do"], "sub/default.do"),
        (["default.a.b.do", "default.b.do", "default.do"], "default.a.b.do"),
        (["default.b.do", "default.do"], "default.b.do"),
        (["default.do"], "default.do"),
    ],
    ids=["exact", "sub-a.b", "sub-b", "sub-default", "parent-a.b", "parent-b", "parent-default"],
)
def test_search_order_picks_first_candidate(tree: Tree, present: List[str], expected: str) -> None:
    tree.path("sub").mkdir()
    write_identifying_scripts(tree, present)

    tree.redo("sub/n.a.b")

    assert tree.read("sub/n.a.b") == f"{expected}\n"


def test_directory_defaults_before_parent(tree: Tree) -> None:
    write_identifying_scripts(tree, ["default.a.b.do", "sub/default.do"])

    tree.redo("sub/n.a.b")

    assert tree.read("sub/n.a.b") == "sub/default.do\n"


def test_grandparent_default_builds_deep_target(tree: Tree) -> None:
    tree.path("one/two").mkdir(parents=True)
    write_identifying_scripts(tree, ["default.b.do", "one/default.c.do"])

    tree.redo("one/two/n.a.b")

    assert tree.read("one/two/n.a.b") == "default.b.do\n"


@pytest.mark.parametrize(
    ("script", "expected_dollar2"),
    [
        ("n.a.b.do", "n.a.b"),
        ("default.a.b.do", "n"),
        ("default.b.do", "n.a"),
        ("default.do", "n.a.b"),
    ],
)
@pytest.mark.parametrize("directory", ["", "sub/"], ids=["top", "sub"])
def test_arguments_for_each_match(tree: Tree, script: str, expected_dollar2: str, directory: str) -> None:
    tree.write(directory + script, SHOW_ARGS)

    tree.redo(directory + "n.a.b")

    assert tree.read(directory + "n.a.b").splitlines() == ["n.a.b", expected_dollar2, ".n.a.b.redo3.tmp"]


def test_arguments_for_target_in_subdirectory(tree: Tree) -> None:
    tree.path("sub").mkdir()
    tree.write("default.b.do", SHOW_ARGS)

    tree.redo("sub/n.a.b")

    assert tree.read("sub/n.a.b").splitlines() == ["sub/n.a.b", "sub/n.a", "sub/.n.a.b.redo3.tmp"]


def test_arguments_ignore_caller_directory(tree: Tree) -> None:
    tree.path("sub").mkdir()
    tree.write("default.b.do", SHOW_ARGS)

    tree.redo("n.a.b", cwd=tree.path("sub"))

    assert tree.read("sub/n.a.b").splitlines() == ["sub/n.a.b", "sub/n.a", "sub/.n.a.b.redo3.tmp"]


def test_script_runs_in_its_directory(tree: Tree) -> None:
    tree.write("sub/here.do", "pwd -P\n")
    tree.write("default.there.do", "pwd -P\n")

    tree.redo("sub/here")
    tree.redo("x.there", cwd=tree.path("sub"))

    assert tree.read("sub/here") == f"{tree.path('sub').resolve()}\n"
    assert tree.read("sub/x.there") == f"{tree.root.resolve()}\n"


def test_path_after_cd_resolves_from_there(tree: Tree) -> None:
    tree.write(
        "all.do",
        """
        cd sub
        redo-ifchange leaf
        cat leaf
    """,
    )
    tree.write("sub/leaf.do", "echo leaf in sub\n")

    tree.redo("all")

    assert tree.read("all") == "leaf in sub\n"
    assert tree.read("sub/leaf") == "leaf in sub\n"
    assert not tree.exists("leaf")


def test_whichdo_lists_candidates_until_found(tree: Tree) -> None:
    tree.path("sub").mkdir()
    tree.write("default.b.do", "echo unused\n")

    result = tree.run("redo-whichdo", "sub/n.a.b")

    assert result.returncode == 0, str(result)
    assert result.stdout.splitlines() == [
        "sub/n.a.b.do",
        "sub/default.a.b.do",
        "sub/default.b.do",
        "sub/default.do",
        "default.a.b.do",
        "default.b.do",
    ]


def test_whichdo_paths_relative_to_cwd(tree: Tree) -> None:
    tree.path("sub").mkdir()
    tree.write("default.b.do", "echo unused\n")

    result = tree.run("redo-whichdo", "n.a.b", cwd=tree.path("sub"))

    assert result.returncode == 0, str(result)
    assert result.stdout.splitlines() == [
        "n.a.b.do",
        "default.a.b.do",
        "default.b.do",
        "default.do",
        "../default.a.b.do",
        "../default.b.do",
    ]


def test_whichdo_exact_match_only_line(tree: Tree) -> None:
    tree.write("n.a.b.do", "echo unused\n")
    tree.write("default.do", "echo unused\n")

    result = tree.run("redo-whichdo", "n.a.b")

    assert result.returncode == 0, str(result)
    assert result.stdout.splitlines() == ["n.a.b.do"]


def test_whichdo_missing_lists_all_fails(tree: Tree) -> None:
    result = tree.run("redo-whichdo", "n.q")

    expected = ["n.q.do"] + candidates_up_to_root(tree.root, tree.root, [".q", ""])
    assert result.returncode == 1, str(result)
    assert result.stdout.splitlines() == expected


def test_whichdo_inside_do_script(tree: Tree) -> None:
    tree.path("sub/deeper").mkdir(parents=True)
    tree.write("sub/default.z.do", "echo unused\n")
    tree.write(
        "sub/probe.do",
        """
        redo-whichdo deeper/t.z
        echo "exit $?"
        set +e
        redo-whichdo deeper/t.q
        echo "exit $?"
    """,
    )

    tree.redo("sub/probe")

    sub = tree.path("sub")
    found = ["deeper/t.z.do", "deeper/default.z.do", "deeper/default.do", "default.z.do", "exit 0"]
    missing = ["deeper/t.q.do"] + candidates_up_to_root(sub / "deeper", sub, [".q", ""]) + ["exit 1"]
    assert tree.read("sub/probe").splitlines() == found + missing


def test_plain_script_stops_at_failure(tree: Tree) -> None:
    tree.write(
        "x.do",
        """
        echo before >> "$RUNLOG"
        false
        echo after >> "$RUNLOG"
        echo output
    """,
    )

    result = tree.run("redo", "x")

    assert result.returncode == 1, str(result)
    assert "redo: error: cannot build 'x': x.do failed with exit status 1" in result.stderr
    assert tree.runs() == ["before"]
    assert not tree.exists("x")


def test_shebang_sh_runs_without_e(tree: Tree) -> None:
    tree.write(
        "x.do",
        """
        #!/bin/sh
        false
        echo after
    """,
    )

    tree.redo("x")

    assert tree.read("x") == "after\n"


def test_shebang_arguments_are_passed(tree: Tree) -> None:
    tree.write(
        "x.do",
        """
        #!/bin/sh -e
        echo before >> "$RUNLOG"
        false
        echo after
    """,
    )

    result = tree.run("redo", "x")

    assert result.returncode == 1, str(result)
    assert "x.do failed with exit status 1" in result.stderr
    assert tree.runs() == ["before"]


def test_shebang_python_gets_arguments(tree: Tree) -> None:
    tree.write(
        "sub/default.py.do",
        """
        #!/usr/bin/env python3
        import os
        import sys

        with open(sys.argv[3], "w") as out:
            out.write(os.path.basename(sys.argv[0]) + "\\n")
            out.write("\\n".join(sys.argv[1:]) + "\\n")
    """,
    )

    tree.redo("sub/n.py")

    assert tree.read("sub/n.py").splitlines() == ["default.py.do", "n.py", "n", ".n.py.redo3.tmp"]


def test_x_flag_traces_commands(tree: Tree) -> None:
    tree.write("x.do", "echo hello\n")

    plain = tree.redo("x")
    traced = tree.redo("-x", "x")

    assert "+ echo hello" not in plain.stderr
    assert "+ echo hello" in traced.stderr.splitlines()
    assert tree.read("x") == "hello\n"


def test_v_flag_echoes_script_lines(tree: Tree) -> None:
    tree.write("x.do", "echo hello\n")

    plain = tree.redo("x")
    verbose = tree.redo("-v", "x")

    assert "echo hello" not in plain.stderr.splitlines()
    assert "echo hello" in verbose.stderr.splitlines()
    assert "+ echo hello" not in verbose.stderr
    assert tree.read("x") == "hello\n"


def test_stdin_is_dev_null(tree: Tree) -> None:
    tree.write(
        "read.do",
        """
        cat
        echo end
    """,
    )
    tree.write("link.do", "readlink /proc/self/fd/0\n")

    tree.redo("read", "link", stdin="text that the script must not see\n")

    assert tree.read("read") == "end\n"
    assert tree.read("link") == "/dev/null\n"


def test_build_lines_relative_to_start(tree: Tree) -> None:
    tree.write("sub/all.do", "redo-ifchange ../top inner\n")
    tree.write("top.do", "redo-ifchange sub/deep\n")
    tree.write("sub/default.do", "echo built\n")

    result = tree.redo("all", cwd=tree.path("sub"))

    assert result.stderr.splitlines() == ["redo  all", "redo    ../top", "redo      deep", "redo    inner"]


def test_spaces_and_unicode_in_names(tree: Tree) -> None:
    tree.write(
        "dir with space/ünï/default.txt.do",
        """
        redo-ifchange "$2  sourcé.in"
        printf "%s\\n" "$1" "$2" "$3"
        cat "$2  sourcé.in"
    """,
    )
    tree.write("dir with space/ünï/nämé  two  sourcé.in", "from the source\n")
    tree.write("héllo wörld.do", 'redo-ifchange "dir with space/ünï/nämé  two.txt"\n')

    result = tree.redo("héllo wörld")

    assert tree.read("dir with space/ünï/nämé  two.txt").splitlines() == [
        "nämé  two.txt",
        "nämé  two",
        ".nämé  two.txt.redo3.tmp",
        "from the source",
    ]
    assert "redo  héllo wörld" in result.stderr.splitlines()
    assert "redo    dir with space/ünï/nämé  two.txt" in result.stderr.splitlines()


@pytest.mark.parametrize("command", ["redo", "redo-ifchange"])
def test_non_utf8_names_build(tree: Tree, command: str) -> None:
    # File names are bytes; "\udcff" stands for the byte 0xff (surrogateescape).
    name = "x\udcffy"
    tree.write("default.do", 'echo "built $1" > $3\n')

    completed = subprocess.run(
        [command, name], cwd=tree.root, env=tree.env, capture_output=True, timeout=TIMEOUT, check=False
    )

    assert completed.returncode == 0, completed.stderr
    assert b"Traceback" not in completed.stderr
    assert os.fsencode(tree.path(name)).endswith(b"x\xffy")
    assert tree.path(name).read_bytes() == b"built x\xffy\n"
    assert completed.stderr.splitlines()[0] == b"redo  x\xffy"


def test_longest_names_build(tree: Tree) -> None:
    # "$3" adds 11 bytes to the name, beyond the 255 a file name may have.
    name = "n" * 250
    tree.write("default.do", 'printf "%s" "$3" > $3\n')

    result = tree.redo(name)

    assert result.returncode == 0, str(result)
    dollar3 = tree.read(name)
    assert len(dollar3) == 255
    assert dollar3.endswith(".redo3.tmp")
    assert os.listdir(tree.path(".redo/tmp")) == []


def test_inner_command_rejects_newline_in_name(tree: Tree) -> None:
    tree.write("all.do", "redo-ifchange \"$(printf 'a\\nb')\" && echo built > $3\n")
    tree.write("default.do", "echo x > $3\n")

    result = tree.run("redo", "all")

    assert result.returncode == 1, str(result)
    assert "names cannot contain a newline" in result.stderr
    assert not tree.exists("a\nb")
    assert not tree.exists("all")


def test_whichdo_keeps_spaces_in_names(tree: Tree) -> None:
    tree.write("a dir/default.txt.do", "echo unused\n")

    result = tree.run("redo-whichdo", "a dir/ñ  b.txt")

    assert result.returncode == 0, str(result)
    assert result.stdout.splitlines() == ["a dir/ñ  b.txt.do", "a dir/default.txt.do"]
