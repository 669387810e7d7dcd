"""The simplest build, to check that the installed commands work at all."""

from conftest import Tree


def test_build_all_by_default(tree: Tree) -> None:
    tree.write(
        "all.do",
        """
        redo-ifchange a
        cat a > $3
    """,
    )
    tree.write("a.do", "echo hello\n")
    result = tree.redo()
    assert tree.read("all") == "hello\n"
    assert "redo  all" in result.stderr
    assert "redo    a" in result.stderr
