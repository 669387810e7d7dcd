"""Build output and stored logs: the build lines and script stderr that redo
shows while it builds (pretty or not, with or without color, status line
and process ids), and what ``redo-log`` replays afterwards."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import pytest

from conftest import Result, Tree, is_alive

# Limit, in seconds, of each wait for a command or a marker file. Only a
# broken redors reaches it.
WAIT_TIMEOUT = 20

# Number of fresh builds, run at once, that each test of the order of output
# lines makes. redo reads a script's stderr from a capture file, and the
# order must hold however late redo gets to run. On an idle machine a wrong
# order is rare, but builds that keep every CPU busy show it far more often.
ORDER_REPEATS = 20

# Select Graphic Rendition, the escape sequence that sets colors.
COLOR_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

# Three levels (all -> a -> b). Each script writes stderr lines before and
# after its own redo-ifchange, so the lines show where the child build sits.
CHAIN_SCRIPTS = {
    "all.do": """
        echo "all before" >&2
        redo-ifchange a
        echo "all after" >&2
        echo all > $3
    """,
    "a.do": """
        echo "a says" >&2
        redo-ifchange b
        echo "a done" >&2
        echo a
    """,
    "b.do": """
        echo "b says" >&2
        echo b
    """,
}

# What `redo all` shows for CHAIN_SCRIPTS at -j1, and what `redo-log -r all`
# replays afterwards.
CHAIN_OUTPUT = [
    "redo  all",
    "all before",
    "redo    a",
    "a says",
    "redo      b",
    "b says",
    "[a] a done",
    "[all] all after",
]

# A script that runs for about one second, long enough for a status line.
SLOW_SCRIPT = """
    sleep 1
    echo done > $3
"""

# The script that `redo-log -f` follows: it marks its start, then writes one
# line, another after one second, and finishes one second later.
FOLLOWED_SCRIPT = """
    touch started
    echo "line 1" >&2
    sleep 1
    echo "line 2" >&2
    sleep 1
    echo slow > $3
"""


def build_in_fresh_directories(tree: Tree, scripts: Dict[str, str], target: str, *options: str) -> List[Result]:
    """Write ``scripts`` into ORDER_REPEATS new subdirectories and run
    ``redo OPTIONS TARGET`` in all of them at once, so every run builds
    every script. No directory above them has a .redo, so each run keeps
    its state in a .redo of its own and the runs do not share targets."""
    args = ["redo", *options, target]
    processes: List[subprocess.Popen[str]] = []
    try:
        for index in range(ORDER_REPEATS):
            directory = tree.path(f"run{index}")
            for name, text in scripts.items():
                tree.write(f"run{index}/{name}", text)
            process = subprocess.Popen(
                args,
                cwd=directory,
                env=tree.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            processes.append(process)

        results = []
        for process in processes:
            stdout, stderr = process.communicate(timeout=WAIT_TIMEOUT)
            result = Result(args, process.returncode, stdout, stderr)
            assert result.returncode == 0, str(result)
            results.append(result)
    finally:
        for process in processes:
            stop_process(process)
    return results


def write_chain(tree: Tree) -> None:
    for name, text in CHAIN_SCRIPTS.items():
        tree.write(name, text)


def lines(text: str) -> List[str]:
    return text.splitlines()


def status_segments(output: str) -> List[str]:
    """Return the pieces of ``output`` that look like a status line.

    The status line is drawn after a carriage return and cleared with
    "\\r\\x1b[K", so the pieces are split at line ends and carriage returns."""
    segments = []
    for piece in re.split(r"[\r\n]", output):
        text = COLOR_ESCAPE.sub("", piece.replace("\x1b[K", ""))
        if text.startswith("redo [") and "/" in text and "building: slow" in text:
            segments.append(text)
    return segments


def run_on_terminal(
    tree: Tree,
    *args: str,
    env: Optional[Dict[str, str]] = None,
    unset: Iterable[str] = (),
) -> Tuple[int, str]:
    """Run a command with stdout and stderr on a new pseudo-terminal, and
    return its exit status and output. The terminal turns each "\\n" into
    "\\r\\n", so the output is given back with "\\n" again."""
    full_env = dict(tree.env)
    full_env["TERM"] = "xterm"
    full_env.update(env or {})
    for name in unset:
        full_env.pop(name, None)

    master, slave = os.openpty()
    try:
        process = subprocess.Popen(
            list(args),
            cwd=tree.root,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
    finally:
        os.close(slave)

    chunks: List[bytes] = []
    deadline = time.monotonic() + WAIT_TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(master, 4096)
            except OSError:
                # EIO: every process that had the terminal open has closed it.
                break
            if not data:
                break
            chunks.append(data)
        else:
            pytest.fail(f"{' '.join(args)} still held the terminal after {WAIT_TIMEOUT} s")
        returncode = process.wait(timeout=WAIT_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT_TIMEOUT)
        os.close(master)

    output = b"".join(chunks).decode("utf-8", errors="replace")
    return returncode, output.replace("\r\n", "\n")


def start_process(tree: Tree, *args: str) -> subprocess.Popen[str]:
    """Start a command in a session of its own, with captured output."""
    return subprocess.Popen(
        list(args),
        cwd=tree.root,
        env=tree.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop_process(process: subprocess.Popen[str]) -> None:
    """Kill a process (and its process group) that is still running."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=WAIT_TIMEOUT)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def wait_for_file(path: Path, process: subprocess.Popen[str]) -> None:
    """Wait until ``path`` exists, and fail early when ``process`` exits first."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"redo exited with {process.returncode} before {path.name} appeared")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear within {WAIT_TIMEOUT} s")
        time.sleep(0.02)


def run_keeping_carriage_returns(tree: Tree, *args: str) -> Result:
    """Run a command like ``tree.run``, but keep each "\\r" in its output,
    which text mode would turn into a line end."""
    completed = subprocess.run(
        list(args),
        cwd=tree.root,
        env=tree.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=WAIT_TIMEOUT,
        check=False,
    )
    return Result(
        list(args),
        completed.returncode,
        completed.stdout.decode("utf-8", errors="replace"),
        completed.stderr.decode("utf-8", errors="replace"),
    )


def redo_log(tree: Tree, *args: str, cwd: Optional[Path] = None) -> Result:
    return tree.run("redo-log", *args, cwd=cwd, timeout=WAIT_TIMEOUT)


# Build lines and script stderr during a build.


def test_build_lines_indent_by_depth(tree: Tree) -> None:
    write_chain(tree)

    result = tree.redo("all", timeout=WAIT_TIMEOUT)

    build_lines = [line for line in lines(result.stderr) if line.startswith("redo ")]
    assert build_lines == ["redo  all", "redo    a", "redo      b"], str(result)


def test_build_lines_relative_to_start_directory(tree: Tree) -> None:
    tree.write(
        "all.do",
        """
        redo-ifchange sub/y
        echo all > $3
    """,
    )
    tree.write("sub/y.do", "echo y\n")

    from_subdirectory = tree.redo("../all", cwd=tree.path("sub"), timeout=WAIT_TIMEOUT)
    from_top = tree.redo("sub/y", timeout=WAIT_TIMEOUT)

    assert lines(from_subdirectory.stderr) == ["redo  ../all", "redo    y"], str(from_subdirectory)
    assert lines(from_top.stderr) == ["redo  sub/y"], str(from_top)


def test_script_lines_follow_build_order(tree: Tree) -> None:
    results = build_in_fresh_directories(tree, CHAIN_SCRIPTS, "all")

    # At -j1 a line carries a "[target] " prefix only when it does not come
    # from the target of the build line above it.
    wrong = [result for result in results if lines(result.stderr) != CHAIN_OUTPUT]
    assert not wrong, f"{len(wrong)} of {len(results)} builds differ from {CHAIN_OUTPUT}, first:\n{wrong[0]}"


def test_resumed_script_runs_first_named(tree: Tree) -> None:
    # With one job slot, p goes on as soon as dep is built, before q starts.
    # Its line after dep's build line carries its name.
    scripts = {
        "all.do": "redo-ifchange p q\necho all > $3\n",
        "p.do": """
            echo "p before" >&2
            redo-ifchange dep
            echo "p after dep" >&2
            echo p > $3
        """,
        "q.do": 'echo "q says" >&2\necho q > $3\n',
        "dep.do": 'echo "dep says" >&2\necho dep > $3\n',
    }

    results = build_in_fresh_directories(tree, scripts, "all")

    expected = [
        "redo  all",
        "redo    p",
        "p before",
        "redo      dep",
        "dep says",
        "[p] p after dep",
        "redo    q",
        "q says",
    ]
    wrong = [result for result in results if lines(result.stderr) != expected]
    assert not wrong, f"{len(wrong)} of {len(results)} builds differ from {expected}, first:\n{wrong[0]}"


def test_unfinished_last_line_shown_at_end(tree: Tree) -> None:
    scripts = {
        "parent.do": """
            echo "parent before" >&2
            redo-ifchange tail
            echo "parent after" >&2
            echo parent > $3
        """,
        "tail.do": """
            echo "first" >&2
            printf 'unfinished' >&2
            echo tail
        """,
    }

    results = build_in_fresh_directories(tree, scripts, "parent")
    log = redo_log(tree, "tail", cwd=tree.path("run0"))

    expected = ["redo  parent", "parent before", "redo    tail", "first", "unfinished", "[parent] parent after"]
    wrong = [result for result in results if lines(result.stderr) != expected]
    assert not wrong, f"{len(wrong)} of {len(results)} builds differ from {expected}, first:\n{wrong[0]}"
    assert lines(log.stdout) == ["redo  tail", "first", "unfinished"], str(log)


def test_script_stderr_stays_out_of_target(tree: Tree) -> None:
    tree.write(
        "from_stdout.do",
        """
        echo "to stderr" >&2
        echo "to stdout"
        echo "more stderr" >&2
    """,
    )
    tree.write(
        "from_file.do",
        """
        echo "to stderr" >&2
        echo "to file" > $3
        echo "more stderr" >&2
    """,
    )

    tree.redo("from_stdout", "from_file", timeout=WAIT_TIMEOUT)

    assert tree.read("from_stdout") == "to stdout\n"
    assert tree.read("from_file") == "to file\n"


def test_parallel_scripts_never_share_line(tree: Tree) -> None:
    # Each child writes half a line, sleeps, and finishes it, three times.
    # Both run at once, so a half line of one meets the lines of the other.
    for name in ("left", "right"):
        tree.write(
            f"{name}.do",
            f"""
            echo "start {name}" >> "$RUNLOG"
            for i in 1 2 3; do
                printf 'part one {name} ' >&2
                sleep 0.2
                echo "part two $i" >&2
                sleep 0.1
            done
            echo "end {name}" >> "$RUNLOG"
            echo {name} > $3
        """,
        )
    tree.write("all.do", "redo-ifchange left right\n")

    result = tree.redo("-j2", "all", timeout=WAIT_TIMEOUT)

    script_lines = [f"[{name}] part one {name} part two {i}" for name in ("left", "right") for i in (1, 2, 3)]
    expected = set(script_lines) | {"redo  all", "redo    left", "redo    right"}
    # Without overlap the check below would prove nothing.
    assert sorted(tree.runs()[:2]) == ["start left", "start right"], tree.runs()
    for line in lines(result.stderr):
        assert line in expected, f"unexpected line {line!r}\n{result}"
    for line in script_lines:
        assert lines(result.stderr).count(line) == 1, f"{line!r} not shown once\n{result}"


def test_no_details_hides_script_stderr(tree: Tree) -> None:
    write_chain(tree)

    result = tree.redo("--no-details", "all", timeout=WAIT_TIMEOUT)
    log = redo_log(tree, "all")

    assert lines(result.stderr) == ["redo  all", "redo    a", "redo      b"], str(result)
    assert lines(log.stdout) == ["redo  all", "all before", "all after"], str(log)


def test_no_log_shows_stderr_unstored(tree: Tree) -> None:
    tree.write(
        "m.do",
        """
        echo "old message" >&2
        echo m
    """,
    )
    tree.redo("m", timeout=WAIT_TIMEOUT)
    tree.write(
        "m.do",
        """
        echo "new message" >&2
        echo m
    """,
    )

    result = tree.redo("--no-log", "m", timeout=WAIT_TIMEOUT)
    log = redo_log(tree, "m")

    assert "new message" in lines(result.stderr), str(result)
    assert "new message" not in log.stdout, str(log)
    assert "old message" not in log.stdout, str(log)


def test_no_log_script_uses_redo_stderr(tree: Tree, tmp_path: Path) -> None:
    # The script reports which file its stderr is. redo's own stderr is a
    # file outside the tree, so the two can be compared by path.
    tree.write(
        "fd.do",
        """
        readlink /proc/$$/fd/2 > $3
    """,
    )
    stderr_path = tmp_path / "redo.stderr"

    for options in (["--no-log"], []):
        with open(stderr_path, "w") as stderr:
            completed = subprocess.run(
                ["redo", *options, "fd"],
                cwd=tree.root,
                env=tree.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                timeout=WAIT_TIMEOUT,
                check=False,
            )
        assert completed.returncode == 0, stderr_path.read_text()
        if options:
            assert tree.read("fd") == f"{stderr_path}\n"
        else:
            # Captured for redo-log, so the script writes somewhere else.
            assert tree.read("fd") != f"{stderr_path}\n"


def test_no_pretty_prefixes_every_line(tree: Tree) -> None:
    results = build_in_fresh_directories(tree, CHAIN_SCRIPTS, "all", "--no-pretty")

    expected = [
        "redo all",
        "[all] all before",
        "redo a",
        "[a] a says",
        "redo b",
        "[b] b says",
        "[a] a done",
        "[all] all after",
    ]
    wrong = [result for result in results if lines(result.stderr) != expected]
    assert not wrong, f"{len(wrong)} of {len(results)} builds differ from {expected}, first:\n{wrong[0]}"


def test_debug_pids_name_script_process(tree: Tree) -> None:
    tree.write(
        "all.do",
        """
        echo $$ > all.pid
        redo-ifchange a
        echo all > $3
    """,
    )
    tree.write(
        "a.do",
        """
        echo $$ > a.pid
        echo a
    """,
    )

    result = tree.redo("--debug-pids", "all", timeout=WAIT_TIMEOUT)

    all_pid = int(tree.read("all.pid"))
    a_pid = int(tree.read("a.pid"))
    assert lines(result.stderr) == [f"redo  all [pid {all_pid}]", f"redo    a [pid {a_pid}]"], str(result)


# Colors.


def test_color_flag_colors_pipe_output(tree: Tree) -> None:
    write_chain(tree)

    result = tree.redo("--color", "all", timeout=WAIT_TIMEOUT)

    assert "\x1b[" in result.stderr, str(result)


def test_pipe_output_uncolored_by_default(tree: Tree) -> None:
    write_chain(tree)

    result = tree.redo("all", timeout=WAIT_TIMEOUT)

    assert "\x1b[" not in result.stderr, str(result)


def test_no_color_overrides_terminal(tree: Tree) -> None:
    write_chain(tree)

    colored_status, colored = run_on_terminal(tree, "redo", "--no-status", "all", unset=["NO_COLOR"])
    plain_status, plain = run_on_terminal(tree, "redo", "--no-status", "--no-color", "all", unset=["NO_COLOR"])

    # The terminal turns color on by default; --no-color must turn it off.
    assert colored_status == 0, repr(colored)
    assert COLOR_ESCAPE.search(colored), repr(colored)
    assert plain_status == 0, repr(plain)
    assert "\x1b[" not in plain, repr(plain)


# Status line.


def test_status_flag_shows_status_on_pipe(tree: Tree) -> None:
    tree.write("slow.do", SLOW_SCRIPT)

    result = run_keeping_carriage_returns(tree, "redo", "--status", "slow")

    assert result.returncode == 0, str(result)
    assert status_segments(result.stderr), repr(result.stderr)
    assert "\r\x1b[K" in result.stderr, repr(result.stderr)


def test_pipe_has_no_status_by_default(tree: Tree) -> None:
    tree.write("slow.do", SLOW_SCRIPT)

    result = run_keeping_carriage_returns(tree, "redo", "slow")

    assert result.returncode == 0, str(result)
    assert not status_segments(result.stderr), repr(result.stderr)
    assert "\x1b[K" not in result.stderr, repr(result.stderr)


@pytest.mark.parametrize(
    "unset",
    [pytest.param([], id="NO_COLOR-set"), pytest.param(["NO_COLOR"], id="NO_COLOR-unset")],
)
def test_terminal_shows_status_by_default(tree: Tree, unset: List[str]) -> None:
    tree.write("slow.do", SLOW_SCRIPT)

    returncode, output = run_on_terminal(tree, "redo", "slow", unset=unset)

    assert returncode == 0, repr(output)
    assert status_segments(output), repr(output)
    assert "\r\x1b[K" in output, repr(output)


def test_no_status_hides_terminal_status(tree: Tree) -> None:
    tree.write("slow.do", SLOW_SCRIPT)

    returncode, output = run_on_terminal(tree, "redo", "--no-status", "slow")

    assert returncode == 0, repr(output)
    assert not status_segments(output), repr(output)
    assert "\x1b[K" not in output, repr(output)


# A background process that keeps writing to stderr.


def test_background_stderr_writer_survives_build(tree: Tree, tmp_path: Path) -> None:
    tree.write(
        "bg.do",
        """
        (while :; do echo tick >&2; sleep 0.1; done) &
        echo $! > bg.pid
        echo done > $3
    """,
    )
    # redo's output goes to files, so a writer that kept redo's stderr open
    # could not make the test wait for it.
    stdout_path = tmp_path / "redo.stdout"
    stderr_path = tmp_path / "redo.stderr"

    try:
        with open(stdout_path, "w") as stdout, open(stderr_path, "w") as stderr:
            started = time.monotonic()
            completed = subprocess.run(
                ["redo", "bg"],
                cwd=tree.root,
                env=tree.env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                timeout=WAIT_TIMEOUT,
                check=False,
            )
            elapsed = time.monotonic() - started
        # A writer that lost its reader would die of SIGPIPE at its next tick.
        time.sleep(0.5)

        assert completed.returncode == 0, stderr_path.read_text()
        assert elapsed < 5, f"redo took {elapsed:.1f} s"
        assert tree.read("bg") == "done\n"
        assert is_alive(int(tree.read("bg.pid"))), stderr_path.read_text()
    finally:
        if tree.exists("bg.pid"):
            try:
                os.kill(int(tree.read("bg.pid")), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


# Stored logs: redo-log.


def test_log_shows_last_build_stderr(tree: Tree) -> None:
    write_chain(tree)
    tree.redo("all", timeout=WAIT_TIMEOUT)

    log = redo_log(tree, "all")

    assert log.returncode == 0, str(log)
    assert lines(log.stdout) == ["redo  all", "all before", "all after"], str(log)


def test_log_names_relative_to_cwd(tree: Tree) -> None:
    tree.write(
        "x.do",
        """
        echo "x message" >&2
        echo x
    """,
    )
    tree.write(
        "sub/y.do",
        """
        echo "y message" >&2
        echo y
    """,
    )
    tree.redo("x", "sub/y", timeout=WAIT_TIMEOUT)

    from_subdirectory = redo_log(tree, "../x", cwd=tree.path("sub"))
    from_top = redo_log(tree, "sub/y")

    assert from_subdirectory.returncode == 0, str(from_subdirectory)
    assert lines(from_subdirectory.stdout) == ["redo  ../x", "x message"], str(from_subdirectory)
    assert from_top.returncode == 0, str(from_top)
    assert lines(from_top.stdout) == ["redo  sub/y", "y message"], str(from_top)


def test_rebuild_replaces_stored_log(tree: Tree) -> None:
    tree.write(
        "m.do",
        """
        echo "old message" >&2
        echo m
    """,
    )
    tree.redo("m", timeout=WAIT_TIMEOUT)
    tree.write(
        "m.do",
        """
        echo "new message" >&2
        echo m
    """,
    )
    tree.redo("m", timeout=WAIT_TIMEOUT)

    log = redo_log(tree, "m")

    assert lines(log.stdout) == ["redo  m", "new message"], str(log)


def test_failed_build_log_is_stored(tree: Tree) -> None:
    tree.write(
        "bad.do",
        """
        echo "it broke" >&2
        exit 3
    """,
    )
    build = tree.run("redo", "bad", timeout=WAIT_TIMEOUT)

    log = redo_log(tree, "bad")

    assert build.returncode != 0, str(build)
    assert "it broke" in lines(log.stdout), str(log)


def test_recursive_log_nests_child_builds(tree: Tree) -> None:
    write_chain(tree)
    tree.redo("all", timeout=WAIT_TIMEOUT)

    log = redo_log(tree, "-r", "all")

    assert log.returncode == 0, str(log)
    assert lines(log.stdout) == CHAIN_OUTPUT, str(log)


def test_recursive_log_shows_each_target_once(tree: Tree) -> None:
    # count needs shared too, which all's script had built just before.
    tree.write("all.do", "redo-ifchange shared count\necho all > $3\n")
    tree.write("shared.do", 'echo "shared says" >&2\necho shared > $3\n')
    tree.write("count.do", 'redo-ifchange shared\necho "count says" >&2\nwc -c < shared > $3\n')
    tree.redo("all", timeout=WAIT_TIMEOUT)

    log = redo_log(tree, "-r", "all")

    assert log.returncode == 0, str(log)
    assert lines(log.stdout) == ["redo  all", "redo    shared", "shared says", "redo    count", "count says"], str(log)


def test_recursive_log_shows_target_rebuilt_during_check(tree: Tree) -> None:
    # dep3 is rebuilt while slow's request checks dep2, which stays as it was.
    tree.write("slow.do", 'redo-ifchange dep2\necho "slow says" >&2\necho slow > $3\n')
    tree.write("dep2.do", "redo-ifchange dep3\necho dep2 > $3\n")
    tree.write("dep3.do", 'redo-ifchange src\necho "dep3 says" >&2\necho same > $3\n')
    tree.write("src", "one\n")
    tree.redo("slow", timeout=WAIT_TIMEOUT)
    tree.touch_later("src", "two\n")
    tree.redo("slow", timeout=WAIT_TIMEOUT)

    log = redo_log(tree, "-r", "slow")

    assert lines(log.stdout) == ["redo  slow", "redo    dep3", "dep3 says", "[slow] slow says"], str(log)


def test_unchanged_children_need_u_flag(tree: Tree) -> None:
    write_chain(tree)
    tree.redo("all", timeout=WAIT_TIMEOUT)
    # Forces only all, so a and b are up to date in this build of all.
    tree.redo("all", timeout=WAIT_TIMEOUT)

    recursive = redo_log(tree, "-r", "all")
    unchanged = redo_log(tree, "-r", "-u", "all")

    assert lines(recursive.stdout) == ["redo  all", "all before", "all after"], str(recursive)
    assert unchanged.returncode == 0, str(unchanged)
    # Dependencies that were up to date come first: the log does not record
    # where the script checked them.
    assert lines(unchanged.stdout) == [
        "redo  all",
        "redo    a",
        "a says",
        "redo      b",
        "b says",
        "[a] a done",
        "[all] all before",
        "[all] all after",
    ], str(unchanged)


def test_log_no_details_shows_build_lines(tree: Tree) -> None:
    write_chain(tree)
    tree.redo("all", timeout=WAIT_TIMEOUT)

    single = redo_log(tree, "--no-details", "all")
    recursive = redo_log(tree, "--no-details", "-r", "all")

    assert lines(single.stdout) == ["redo  all"], str(single)
    assert lines(recursive.stdout) == ["redo  all", "redo    a", "redo      b"], str(recursive)


def test_log_no_pretty_prefixes_lines(tree: Tree) -> None:
    write_chain(tree)
    tree.redo("all", timeout=WAIT_TIMEOUT)

    log = redo_log(tree, "--no-pretty", "-r", "all")

    expected = [
        "redo all",
        "[all] all before",
        "redo a",
        "[a] a says",
        "redo b",
        "[b] b says",
        "[a] a done",
        "[all] all after",
    ]
    assert lines(log.stdout) == expected, str(log)


def test_log_unknown_target_fails(tree: Tree) -> None:
    write_chain(tree)
    tree.redo("all", timeout=WAIT_TIMEOUT)

    log = redo_log(tree, "nosuch")

    assert log.returncode == 1, str(log)
    assert "no log for 'nosuch'" in log.stderr, str(log)


def test_log_source_file_fails(tree: Tree) -> None:
    tree.write("input.txt", "text\n")
    tree.write(
        "uses.do",
        """
        redo-ifchange input.txt
        cat input.txt
    """,
    )
    tree.redo("uses", timeout=WAIT_TIMEOUT)

    log = redo_log(tree, "input.txt")

    assert log.returncode == 1, str(log)
    assert "source file" in log.stderr, str(log)


def test_follow_waits_for_running_build(tree: Tree) -> None:
    tree.write("slow.do", FOLLOWED_SCRIPT)

    build = start_process(tree, "redo", "slow")
    follower: Optional[subprocess.Popen[str]] = None
    try:
        wait_for_file(tree.path("started"), build)
        follower = start_process(tree, "redo-log", "-f", "slow")

        _, build_stderr = build.communicate(timeout=WAIT_TIMEOUT)
        build_done = time.monotonic()
        try:
            log_stdout, log_stderr = follower.communicate(timeout=WAIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"redo-log -f still ran {WAIT_TIMEOUT} s after the build finished")
        lag = time.monotonic() - build_done
    finally:
        stop_process(build)
        if follower is not None:
            stop_process(follower)

    assert build.returncode == 0, build_stderr
    assert follower.returncode == 0, log_stdout + log_stderr
    assert "line 1" in lines(log_stdout), log_stdout + log_stderr
    assert "line 2" in lines(log_stdout), log_stdout + log_stderr
    assert lag < 3, f"redo-log -f exited {lag:.1f} s after the build"


def test_interrupted_build_keeps_its_log(tree: Tree) -> None:
    tree.write(
        "slow.do",
        """
        trap 'echo "cleaning up" >&2; exit 1' TERM
        echo "line 1" >&2
        touch started
        sleep 30
        echo slow > $3
    """,
    )
    build = start_process(tree, "redo", "slow")
    try:
        wait_for_file(tree.path("started"), build)
        build.send_signal(signal.SIGTERM)
        _, build_stderr = build.communicate(timeout=WAIT_TIMEOUT)
    finally:
        stop_process(build)

    log = redo_log(tree, "slow")

    assert build.returncode == 143, build_stderr
    assert "cleaning up" in lines(build_stderr), build_stderr
    # The shell may also print that sleep was terminated.
    assert lines(log.stdout)[:2] == ["redo  slow", "line 1"], str(log)
    assert lines(log.stdout)[-1] == "cleaning up", str(log)


def test_follow_ends_after_killed_run(tree: Tree) -> None:
    tree.write("slow.do", "echo $$ > script.pid\n" + FOLLOWED_SCRIPT.replace("sleep 1", "sleep 30"))
    build = start_process(tree, "redo", "slow")
    try:
        wait_for_file(tree.path("started"), build)
        os.killpg(build.pid, signal.SIGKILL)
        build.wait(timeout=WAIT_TIMEOUT)

        log = redo_log(tree, "-f", "slow")
    finally:
        stop_process(build)
        os.killpg(int(tree.read("script.pid")), signal.SIGKILL)

    assert log.returncode == 0, str(log)
    assert lines(log.stdout)[0] == "redo  slow", str(log)


def test_log_without_follow_returns_during_build(tree: Tree) -> None:
    tree.write("slow.do", FOLLOWED_SCRIPT)

    build = start_process(tree, "redo", "slow")
    try:
        wait_for_file(tree.path("started"), build)
        redo_log(tree, "slow")
        still_building = build.poll() is None
        _, build_stderr = build.communicate(timeout=WAIT_TIMEOUT)
    finally:
        stop_process(build)

    assert build.returncode == 0, build_stderr
    assert still_building, "redo-log without -f waited for the build to finish"


def test_follow_idle_target_prints_log(tree: Tree) -> None:
    tree.write(
        "quick.do",
        """
        echo "quick message" >&2
        echo quick
    """,
    )
    tree.redo("quick", timeout=WAIT_TIMEOUT)

    log = redo_log(tree, "-f", "quick")

    assert log.returncode == 0, str(log)
    assert lines(log.stdout) == ["redo  quick", "quick message"], str(log)


def test_log_works_inside_do_script(tree: Tree) -> None:
    tree.write(
        "child.do",
        """
        echo "child message" >&2
        echo child
    """,
    )
    tree.write(
        "report.do",
        """
        redo-ifchange child
        redo-log child > child.log
        echo report > $3
    """,
    )

    tree.redo("report", timeout=WAIT_TIMEOUT)

    assert tree.read("report") == "report\n"
    assert lines(tree.read("child.log")) == ["redo  child", "child message"]
