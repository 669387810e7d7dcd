"""Errors: dependency cycles, missing targets, failing scripts, -k, exit
statuses, and the messages that explain them."""

from __future__ import annotations

import pytest

from conftest import Result, Tree

# A cycle or a self-dependency must fail at once. The timeout only keeps a
# hanging redo from blocking the whole test run.
HANG_TIMEOUT = 15

MISSING_MESSAGE = "it does not exist and no .do file builds it (redo-whichdo lists"


def assert_no_crash(result: Result) -> None:
    """Check that redo reported the error itself instead of crashing."""
    assert "Traceback" not in result.output, str(result)
    assert "panicked" not in result.output, str(result)


def last_line(text: str) -> str:
    """Return the last non-empty line of an output."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "the output is empty"
    return lines[-1]


# Dependency cycles and self-dependency.


def test_two_target_cycle_names_both(tree: Tree) -> None:
    tree.write("a.do", "redo-ifchange b\necho a > $3\n")
    tree.write("b.do", "redo-ifchange a\necho b > $3\n")

    result = tree.run("redo", "a", timeout=HANG_TIMEOUT)

    assert result.returncode == 1, str(result)
    assert "redo: error: dependency cycle: a -> b -> a" in result.stderr, str(result)
    # a did not fail on its own, so b's message names the request that closed the cycle.
    assert "b.do failed with exit status 1 after it asked for 'a', which would close the cycle" in result.stderr
    assert not tree.exists("a")
    assert not tree.exists("b")
    assert_no_crash(result)


def test_three_target_cycle_names_all(tree: Tree) -> None:
    tree.write("a.do", "redo-ifchange b\necho a > $3\n")
    tree.write("b.do", "redo-ifchange c\necho b > $3\n")
    tree.write("c.do", "redo-ifchange a\necho c > $3\n")

    result = tree.run("redo", "a", timeout=HANG_TIMEOUT)

    assert result.returncode == 1, str(result)
    assert "redo: error: dependency cycle: a -> b -> c -> a" in result.stderr, str(result)
    for name in ("a", "b", "c"):
        assert not tree.exists(name), name
    assert_no_crash(result)


def test_cycle_broken_then_builds(tree: Tree) -> None:
    tree.write("a.do", "redo-ifchange b\ncat b > $3\n")
    tree.write("b.do", "redo-ifchange a\necho b > $3\n")
    failed = tree.run("redo", "a", timeout=HANG_TIMEOUT)
    assert failed.returncode == 1, str(failed)

    tree.write("b.do", "echo fixed > $3\n")
    tree.redo("a", timeout=HANG_TIMEOUT)

    assert tree.read("a") == "fixed\n"
    assert tree.read("b") == "fixed\n"


@pytest.mark.parametrize(
    "request_line",
    [
        "redo-ifchange all",
        "redo-ifchange one all two",
    ],
    ids=["alone", "among-others"],
)
def test_target_depending_on_itself_fails(tree: Tree, request_line: str) -> None:
    tree.write("all.do", f"{request_line}\necho all > $3\n")
    tree.write("one.do", "echo one > $3\n")
    tree.write("two.do", "echo two > $3\n")

    result = tree.run("redo", "all", timeout=HANG_TIMEOUT)

    assert result.returncode == 1, str(result)
    assert "redo: error: cannot build 'all': it depends on itself" in result.stderr, str(result)
    assert "all.do failed with exit status 1 after it asked for itself" in result.stderr, str(result)
    assert not tree.exists("all")
    assert_no_crash(result)


# Targets that nothing builds.


@pytest.mark.parametrize("command", ["redo", "redo-ifchange"])
def test_missing_target_fails_at_shell(tree: Tree, command: str) -> None:
    result = tree.run(command, "nosuch", timeout=HANG_TIMEOUT)

    assert result.returncode == 1, str(result)
    assert f"redo: error: cannot build 'nosuch': {MISSING_MESSAGE}" in result.stderr, str(result)
    assert not tree.exists("nosuch")
    assert not tree.exists(".redo")
    assert_no_crash(result)


def test_missing_dependency_fails_caller(tree: Tree) -> None:
    tree.write(
        "user.do",
        """
        redo-ifchange nosuch
        echo "user ran on" >> "$RUNLOG"
        echo built > $3
    """,
    )

    result = tree.run("redo", "user", timeout=HANG_TIMEOUT)

    assert result.returncode == 1, str(result)
    assert f"redo: error: cannot build 'nosuch': {MISSING_MESSAGE}" in result.stderr, str(result)
    assert (
        "redo: error: cannot build 'user': user.do failed with exit status 1 after its dependency 'nosuch' failed"
    ) in result.stderr, str(result)
    assert tree.runs() == []
    assert not tree.exists("user")
    assert not tree.exists("nosuch")


# Failing scripts.


def test_failing_script_reports_exit_status(tree: Tree) -> None:
    tree.write("bad.do", "echo partial > $3\nexit 7\n")

    result = tree.run("redo", "bad")

    assert result.returncode == 1, str(result)
    assert "redo: error: cannot build 'bad': bad.do failed with exit status 7" in result.stderr, str(result)
    assert not tree.exists("bad")
    assert_no_crash(result)


def test_failed_dependency_named_in_message(tree: Tree) -> None:
    tree.write("top.do", "redo-ifchange mid\ncat mid > $3\n")
    tree.write("mid.do", "exit 5\n")

    result = tree.run("redo", "top")

    assert result.returncode == 1, str(result)
    assert "redo: error: cannot build 'mid': mid.do failed with exit status 5" in result.stderr, str(result)
    assert (
        "redo: error: cannot build 'top': top.do failed with exit status 1 after its dependency 'mid' failed"
    ) in result.stderr, str(result)
    assert not tree.exists("top")
    assert not tree.exists("mid")


@pytest.mark.parametrize("signal_number", [9, 15])
def test_killed_script_names_signal(tree: Tree, signal_number: int) -> None:
    tree.write("killed.do", f"echo partial > $3\nkill -{signal_number} $$\necho after > $3\n")

    result = tree.run("redo", "killed")

    assert result.returncode == 1, str(result)
    assert (f"redo: error: cannot build 'killed': killed.do was killed by signal {signal_number}") in result.stderr, (
        str(result)
    )
    assert not tree.exists("killed")
    assert_no_crash(result)


# Stopping at the first failure, or going on with -k.


def write_one_bad_two(tree: Tree) -> None:
    """Write targets one, two (fine), bad (fails), dep (needs bad) and all
    (needs all four, in that order), each logging its name when it runs."""
    tree.write("all.do", 'redo-ifchange one bad two dep\necho all >> "$RUNLOG"\necho all > $3\n')
    tree.write("one.do", 'echo one >> "$RUNLOG"\necho 1 > $3\n')
    tree.write("bad.do", 'echo bad >> "$RUNLOG"\nexit 3\n')
    tree.write("two.do", 'echo two >> "$RUNLOG"\necho 2 > $3\n')
    tree.write("dep.do", 'redo-ifchange bad\necho dep >> "$RUNLOG"\necho dep > $3\n')


def test_first_failure_stops_build(tree: Tree) -> None:
    write_one_bad_two(tree)

    result = tree.run("redo", "all")

    assert result.returncode == 1, str(result)
    assert tree.runs() == ["one", "bad"]
    assert tree.exists("one")
    assert not tree.exists("two")
    assert not tree.exists("all")
    assert "these targets failed" not in result.stderr, str(result)


def test_first_failure_skips_later_arguments(tree: Tree) -> None:
    write_one_bad_two(tree)

    result = tree.run("redo", "bad", "one")

    assert result.returncode == 1, str(result)
    assert tree.runs() == ["bad"]
    assert not tree.exists("one")


@pytest.mark.parametrize("option", ["-k", "--keep-going"])
def test_keep_going_builds_independent_targets(tree: Tree, option: str) -> None:
    write_one_bad_two(tree)

    result = tree.run("redo", option, "all")

    assert result.returncode == 1, str(result)
    assert tree.runs() == ["one", "bad", "two"]
    assert tree.read("one") == "1\n"
    assert tree.read("two") == "2\n"
    assert not tree.exists("dep")
    assert not tree.exists("all")
    summary = last_line(result.stderr)
    prefix = "redo: error: these targets failed: "
    assert summary.startswith(prefix), str(result)
    assert sorted(summary[len(prefix) :].split(", ")) == ["all", "bad", "dep"], str(result)


def test_keep_going_lists_failed_arguments(tree: Tree) -> None:
    write_one_bad_two(tree)

    result = tree.run("redo", "-k", "bad", "one", "two")

    assert result.returncode == 1, str(result)
    assert tree.runs() == ["bad", "one", "two"]
    assert tree.exists("one")
    assert tree.exists("two")
    assert last_line(result.stderr) == "redo: error: these targets failed: bad", str(result)


# Usage errors.


@pytest.mark.parametrize(
    "command",
    [
        "redo",
        "redo-ifchange",
        "redo-whichdo",
        "redo-targets",
        "redo-sources",
        "redo-ood",
    ],
)
def test_unknown_option_exits_two(tree: Tree, command: str) -> None:
    tree.write("x.do", 'echo x >> "$RUNLOG"\necho x > $3\n')

    result = tree.run(command, "-f", "x")

    assert result.returncode == 2, str(result)
    assert tree.runs() == []
    assert not tree.exists("x")
    assert not tree.exists(".redo")


@pytest.mark.parametrize("command", ["redo-ifcreate", "redo-always", "redo-stamp", "redo-flush-cache"])
def test_inner_command_rejected_at_shell(tree: Tree, command: str) -> None:
    result = tree.run(command, "foo")

    assert result.returncode == 1, str(result)
    assert "only works inside a .do script" in result.stderr, str(result)
    assert not tree.exists("foo")
    assert_no_crash(result)


@pytest.mark.parametrize("command", ["redo-ifchange", "redo-ifcreate", "redo", "redo-whichdo"])
def test_inner_command_rejects_option(tree: Tree, command: str) -> None:
    tree.write("foo.do", 'echo foo >> "$RUNLOG"\necho foo > $3\n')
    tree.write(
        "opt.do",
        f"""
        status=0
        {command} -x foo 2> inner.err || status=$?
        echo "inner $status" >> "$RUNLOG"
        echo done > $3
    """,
    )

    tree.redo("opt")

    assert tree.runs() == ["inner 2"]
    assert "invalid option" in tree.read("inner.err")
    assert "'-x'" in tree.read("inner.err")
    assert not tree.exists("foo")


def test_double_dash_ends_inner_options(tree: Tree) -> None:
    tree.write("-x.do", 'echo dash-x >> "$RUNLOG"\necho from-dash-x > $3\n')
    tree.write("user.do", "redo-ifchange -- -x\ncat ./-x > $3\n")

    tree.redo("user")

    assert tree.read("user") == "from-dash-x\n"
    assert tree.runs() == ["dash-x"]
