"""When redo rebuilds a target, and when it leaves it alone.

A file counts as changed only when its stamp differs and its BLAKE3 hash
confirms it. Each script whose runs a test counts appends a line naming its
target to ``$RUNLOG`` as its last step, so the run log lists the finished
builds in order.
"""

import pytest

from conftest import Tree


def write_two_branches(tree: Tree) -> None:
    """Write ``all`` depending on ``a.out`` (from ``a.in``) and ``b.out`` (from ``b.in``)."""
    tree.write("a.in", "a one\n")
    tree.write("b.in", "b one\n")
    tree.write(
        "default.out.do",
        """
        redo-ifchange "$2.in"
        cat "$2.in"
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.write(
        "all.do",
        """
        redo-ifchange a.out b.out
        cat a.out b.out
        echo "$1" >> "$RUNLOG"
    """,
    )


def write_first_line_chain(tree: Tree) -> None:
    """Write ``top`` built from ``mid``, which contains only the first line of ``src``."""
    tree.write("src", "first\nsecond\n")
    tree.write(
        "mid.do",
        """
        redo-ifchange src
        head -n 1 src
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.write(
        "top.do",
        """
        redo-ifchange mid
        cat mid
        echo "$1" >> "$RUNLOG"
    """,
    )


def test_first_build_runs_every_script(tree: Tree) -> None:
    write_two_branches(tree)

    tree.ifchange("all")

    assert sorted(tree.runs()) == ["a.out", "all", "b.out"]
    assert tree.runs()[-1] == "all"
    assert tree.read("all") == "a one\nb one\n"


def test_up_to_date_rebuilds_nothing(tree: Tree) -> None:
    write_two_branches(tree)
    tree.ifchange("all")
    tree.clear_runs()

    tree.ifchange("all")

    assert tree.runs() == []


def test_touch_rebuilds_nothing(tree: Tree) -> None:
    write_two_branches(tree)
    tree.ifchange("all")
    tree.clear_runs()

    tree.touch_later("a.in")
    tree.ifchange("all")

    assert tree.runs() == []


def test_same_content_rewrite_rebuilds_nothing(tree: Tree) -> None:
    write_two_branches(tree)
    tree.ifchange("all")
    tree.clear_runs()

    tree.touch_later("a.in", "a one\n")
    tree.ifchange("all")

    assert tree.runs() == []


def test_content_change_rebuilds_only_dependents(tree: Tree) -> None:
    write_two_branches(tree)
    tree.ifchange("all")
    tree.clear_runs()

    tree.touch_later("a.in", "a two\n")
    tree.ifchange("all")

    assert tree.runs() == ["a.out", "all"]
    assert tree.read("all") == "a two\nb one\n"


def test_redo_forces_only_named_target(tree: Tree) -> None:
    write_two_branches(tree)
    tree.ifchange("all")
    tree.clear_runs()

    tree.redo("all")

    assert tree.runs() == ["all"]


def test_no_argument_builds_all(tree: Tree) -> None:
    write_two_branches(tree)

    tree.ifchange()
    first = tree.runs()
    tree.clear_runs()
    tree.redo()
    second = tree.runs()

    assert sorted(first) == ["a.out", "all", "b.out"]
    assert second == ["all"]


def test_identical_output_stops_propagation(tree: Tree) -> None:
    write_first_line_chain(tree)
    tree.ifchange("top")
    tree.clear_runs()

    tree.touch_later("src", "first\nanother second\n")
    tree.ifchange("top")

    assert tree.runs() == ["mid"]
    assert tree.read("top") == "first\n"


def test_unicode_source_change_rebuilds(tree: Tree) -> None:
    tree.write("dïr  two/sourcé  file.in", "one\n")
    tree.write(
        "dïr  two/default.out.do",
        """
        redo-ifchange "$2.in"
        cat "$2.in"
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.ifchange("dïr  two/sourcé  file.out")
    tree.clear_runs()

    tree.touch_later("dïr  two/sourcé  file.in")
    tree.ifchange("dïr  two/sourcé  file.out")

    assert tree.runs() == []

    tree.touch_later("dïr  two/sourcé  file.in", "two\n")
    tree.ifchange("dïr  two/sourcé  file.out")

    assert tree.runs() == ["sourcé  file.out"]
    assert tree.read("dïr  two/sourcé  file.out") == "two\n"


def test_chain_rebuilds_every_level(tree: Tree) -> None:
    tree.write("d", "one\n")
    for name, source in [("c", "d"), ("b", "c"), ("a", "b")]:
        tree.write(
            f"{name}.do",
            f"""
            redo-ifchange {source}
            echo "{name}:$(cat {source})"
            echo "$1" >> "$RUNLOG"
        """,
        )
    tree.write(
        "side.do",
        """
        echo side
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.write(
        "all.do",
        """
        redo-ifchange a side
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.ifchange("all")
    tree.clear_runs()

    tree.touch_later("d", "two\n")
    tree.ifchange("all")

    assert tree.runs() == ["c", "b", "a", "all"]
    assert tree.read("a") == "a:b:c:two\n"


def test_do_file_change_rebuilds(tree: Tree) -> None:
    write_first_line_chain(tree)
    tree.ifchange("top")
    tree.clear_runs()

    tree.touch_later(
        "mid.do",
        """
        redo-ifchange src
        tail -n 1 src
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.ifchange("top")

    assert tree.runs() == ["mid", "top"]
    assert tree.read("top") == "second\n"


def test_do_comment_change_rebuilds_target_only(tree: Tree) -> None:
    write_first_line_chain(tree)
    tree.ifchange("top")
    tree.clear_runs()

    tree.touch_later(
        "mid.do",
        """
        # Only this comment is new.
        redo-ifchange src
        head -n 1 src
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.ifchange("top")

    assert tree.runs() == ["mid"]


def test_touching_do_file_rebuilds_nothing(tree: Tree) -> None:
    write_first_line_chain(tree)
    tree.ifchange("top")
    tree.clear_runs()

    tree.touch_later("mid.do")
    tree.ifchange("top")

    assert tree.runs() == []


def test_new_specific_do_rebuilds(tree: Tree) -> None:
    tree.write(
        "default.do",
        """
        echo generic
        echo "default.do $1" >> "$RUNLOG"
    """,
    )
    tree.write(
        "all.do",
        """
        redo-ifchange x
        cat x
        echo "all.do $1" >> "$RUNLOG"
    """,
    )
    tree.ifchange("all")
    tree.clear_runs()

    tree.write(
        "x.do",
        """
        echo specific
        echo "x.do $1" >> "$RUNLOG"
    """,
    )
    tree.ifchange("all")

    assert tree.runs() == ["x.do x", "all.do all"]
    assert tree.read("x") == "specific\n"
    assert tree.read("all") == "specific\n"


def test_new_subdirectory_default_rebuilds(tree: Tree) -> None:
    tree.write(
        "default.do",
        """
        echo generic
        echo "default.do $1" >> "$RUNLOG"
    """,
    )
    tree.path("sub").mkdir()
    tree.ifchange("sub/x")
    tree.clear_runs()

    tree.write(
        "sub/default.do",
        """
        echo nearer
        echo "sub/default.do $1" >> "$RUNLOG"
    """,
    )
    tree.ifchange("sub/x")

    assert tree.runs() == ["sub/default.do x"]
    assert tree.read("sub/x") == "nearer\n"


def test_hand_edited_target_is_kept(tree: Tree) -> None:
    write_first_line_chain(tree)
    tree.ifchange("top")
    tree.clear_runs()
    warning = (
        "redo: warning: 'mid' was changed outside redo; keeping it and treating it as a source"
        " (delete it to have redo build it again)"
    )

    tree.touch_later("mid", "by hand\n")
    result = tree.ifchange("top")

    assert warning in result.stderr
    assert tree.read("mid") == "by hand\n"
    assert tree.runs() == ["top"]
    assert tree.read("top") == "by hand\n"

    tree.clear_runs()
    result = tree.redo("mid")

    assert warning in result.stderr
    assert tree.read("mid") == "by hand\n"
    assert tree.runs() == []

    tree.path("mid").unlink()
    tree.ifchange("top")

    assert tree.runs() == ["mid", "top"]
    assert tree.read("mid") == "first\n"
    assert tree.read("top") == "first\n"


def test_deleted_do_turns_target_source(tree: Tree) -> None:
    write_first_line_chain(tree)
    tree.ifchange("top")
    tree.clear_runs()

    tree.path("mid.do").unlink()
    result = tree.ifchange("top")

    assert "no .do file builds 'mid' any more; it is now a source" in result.stderr
    assert tree.read("mid") == "first\n"
    assert tree.runs() == []

    tree.touch_later("mid", "edited source\n")
    tree.ifchange("top")

    assert tree.runs() == ["top"]
    assert tree.read("top") == "edited source\n"


def test_catch_all_never_builds_do_files(tree: Tree) -> None:
    # default.do could match foo.do, the deleted dependency of foo: it must
    # not write a new foo.do from its own output. It builds foo instead.
    tree.write("default.do", 'echo "generic $1" > $3\n')
    tree.write("foo.do", "echo foo > $3\n")
    tree.ifchange("foo")

    tree.path("foo.do").unlink()
    result = tree.ifchange("foo")

    assert result.returncode == 0, str(result)
    assert not tree.exists("foo.do")
    assert tree.read("foo") == "generic foo\n"
    assert tree.run("redo-whichdo", "x.do").stdout.splitlines() == ["x.do.do"]


@pytest.mark.parametrize("name", ["data.txt", "sub dir/dätä  file.txt"])
def test_catch_all_never_overwrites_sources(tree: Tree, name: str) -> None:
    tree.write(
        "default.do",
        """
        echo generated
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.write(name, "written by hand\n")

    forced = tree.run("redo", name)

    assert forced.returncode == 0, str(forced)
    assert (
        f"redo: warning: not building '{name}': it exists and redo did not create it, so it is a source"
        in forced.stderr
    )
    assert tree.read(name) == "written by hand\n"
    assert tree.runs() == []

    tree.ifchange(name)

    assert tree.read(name) == "written by hand\n"
    assert tree.runs() == []


def test_catch_all_builds_around_sources(tree: Tree) -> None:
    tree.write(
        "default.do",
        """
        redo-ifchange data.txt
        tr a-z A-Z < data.txt
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.write("data.txt", "written by hand\n")

    tree.ifchange("upper")

    assert tree.read("upper") == "WRITTEN BY HAND\n"
    assert tree.read("data.txt") == "written by hand\n"
    assert tree.runs() == ["upper"]


def test_ifcreate_rebuilds_when_file_appears(tree: Tree) -> None:
    tree.write(
        "x.do",
        """
        if [ -e extra ]; then
            redo-ifchange extra
            cat extra
        else
            redo-ifcreate extra
            echo none
        fi
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.ifchange("x")
    tree.ifchange("x")

    assert tree.runs() == ["x"]
    assert tree.read("x") == "none\n"

    tree.write("extra", "now here\n")
    tree.ifchange("x")

    assert tree.runs() == ["x", "x"]
    assert tree.read("x") == "now here\n"


def test_ifcreate_existing_file_fails(tree: Tree) -> None:
    tree.write("present", "here\n")
    tree.write(
        "x.do",
        """
        if redo-ifcreate present; then echo "exit 0"; else echo "exit $?"; fi
    """,
    )

    result = tree.redo("x")

    assert tree.read("x") == "exit 1\n"
    assert "already exists" in result.stderr
    assert "use redo-ifchange" in result.stderr


def test_always_builds_once_every_run(tree: Tree) -> None:
    tree.write(
        "clock.do",
        """
        redo-always
        echo tick
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.write(
        "default.user.do",
        """
        redo-ifchange clock
        cat clock
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.write(
        "all.do",
        """
        redo-ifchange a.user b.user clock
        echo "$1" >> "$RUNLOG"
    """,
    )

    tree.ifchange("all")

    assert tree.runs().count("clock") == 1
    assert sorted(tree.runs()) == ["a.user", "all", "b.user", "clock"]

    tree.clear_runs()
    tree.ifchange("all")

    assert tree.runs() == ["clock"]


def test_always_changing_output_propagates(tree: Tree) -> None:
    tree.write(
        "counter.do",
        """
        redo-always
        count=$(cat count 2>/dev/null || echo 0)
        count=$((count + 1))
        echo "$count" > count
        echo "$count"
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.write(
        "report.do",
        """
        redo-ifchange counter
        echo "count $(cat counter)"
        echo "$1" >> "$RUNLOG"
    """,
    )

    tree.ifchange("report")
    tree.ifchange("report")

    assert tree.runs() == ["counter", "report", "counter", "report"]
    assert tree.read("report") == "count 2\n"


def test_stamp_unchanged_stops_dependents(tree: Tree) -> None:
    tree.write("files/one", "")
    tree.write(
        "listing.do",
        """
        redo-always
        ls files | redo-stamp
        count=$(cat generation 2>/dev/null || echo 0)
        count=$((count + 1))
        echo "$count" > generation
        echo "generation $count"
        ls files
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.write(
        "report.do",
        """
        redo-ifchange listing
        grep -v generation listing
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.ifchange("report")
    tree.clear_runs()

    tree.ifchange("report")

    assert tree.runs() == ["listing"]
    assert tree.read("listing") == "generation 2\none\n"

    tree.clear_runs()
    tree.write("files/two", "")
    tree.ifchange("report")

    assert tree.runs() == ["listing", "report"]
    assert tree.read("report") == "one\ntwo\n"


def test_target_checked_once_per_run(tree: Tree) -> None:
    tree.write(
        "x.do",
        """
        echo built
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.write(
        "default.user.do",
        """
        redo-ifchange x
        cat x
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.write(
        "all.do",
        """
        redo-ifchange x
        redo-ifchange x
        redo-ifchange a.user b.user
        echo "$1" >> "$RUNLOG"
    """,
    )

    tree.redo("all")

    assert tree.runs().count("x") == 1
    assert sorted(tree.runs()) == ["a.user", "all", "b.user", "x"]


def write_self_test(tree: Tree, flush: bool) -> None:
    """Write ``check``, which changes ``src`` between two ``redo-ifchange out`` calls."""
    tree.write("src", "old\n")
    tree.write(
        "out.do",
        """
        redo-ifchange src
        cat src
        echo "$1" >> "$RUNLOG"
    """,
    )
    flush_line = "redo-flush-cache" if flush else ""
    tree.write(
        "check.do",
        f"""
        redo-ifchange out
        cat out
        echo "a much longer new text" > src
        {flush_line}
        redo-ifchange out
        cat out
    """,
    )


def test_flush_cache_checks_again(tree: Tree) -> None:
    write_self_test(tree, flush=True)

    tree.redo("check")

    assert tree.runs() == ["out", "out"]
    assert tree.read("check") == "old\na much longer new text\n"


def test_without_flush_checked_once(tree: Tree) -> None:
    write_self_test(tree, flush=False)

    tree.redo("check")

    assert tree.runs() == ["out"]
    assert tree.read("check") == "old\nold\n"


def test_redo_inside_do_forces_build(tree: Tree) -> None:
    tree.write(
        "x.do",
        """
        echo built
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.write(
        "top.do",
        """
        redo x
        cat x
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.ifchange("x")
    tree.clear_runs()

    tree.redo("top")

    assert tree.runs() == ["x", "top"]


def test_redo_inside_do_records_nothing(tree: Tree) -> None:
    tree.write("src", "one\n")
    tree.write(
        "x.do",
        """
        redo-ifchange src
        cat src
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.write(
        "forced.do",
        """
        redo x
        cat x
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.write(
        "declared.do",
        """
        redo-ifchange x
        cat x
        echo "$1" >> "$RUNLOG"
    """,
    )
    tree.ifchange("forced", "declared")
    tree.clear_runs()

    tree.touch_later("src", "two\n")
    tree.ifchange("forced")

    assert tree.runs() == []
    assert tree.read("forced") == "one\n"

    tree.ifchange("declared")

    assert tree.runs() == ["x", "declared"]
    assert tree.read("declared") == "two\n"
