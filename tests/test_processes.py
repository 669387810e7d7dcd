"""Job processes: daemons and background processes, descriptors and stdin,
signals to redo, recovery after SIGKILL, the SIGCHLD fallback
(REDORS_NO_PIDFD=1), and many inner calls from one script."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

from conftest import LIST_FDS, Result, Tree, fd_listing, is_alive

# Limit, in seconds, of each wait for a marker file or for redo to exit.
# Only a broken redors reaches it.
WAIT_TIMEOUT = 10
# Seconds that stopped processes may take to disappear after redo exits.
GONE_TIMEOUT = 3

PIDFD_MODES = [
    pytest.param({}, id="pidfd"),
    pytest.param({"REDORS_NO_PIDFD": "1"}, id="no-pidfd"),
]

# A server that detaches as daemons do (two forks and setsid) and closes only
# stdin, stdout and stderr, so it keeps every other descriptor it inherited.
DAEMON_SCRIPT = """
    import os
    import socket
    import sys
    import time

    pidfile = sys.argv[1]
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    with open(pidfile + ".tmp", "w") as out:
        out.write(str(os.getpid()))
    os.rename(pidfile + ".tmp", pidfile)
    time.sleep(30)
"""

# Prints the descriptors open in the process that runs it, one line, sorted.


class Reaper:
    """Kills, at the end of a test, the processes and process groups that the
    test started: by Popen object, by process group id, or by a pid that a
    script wrote to a file (that pid is killed together with its group)."""

    def __init__(self) -> None:
        self.popens: List[subprocess.Popen] = []
        self.pidfiles: List[Path] = []
        self.groups: List[int] = []

    def track_popen(self, process: subprocess.Popen) -> subprocess.Popen:
        self.popens.append(process)
        return process

    def track_pidfile(self, path: Path) -> None:
        self.pidfiles.append(path)

    def track_group(self, pgid: int) -> None:
        self.groups.append(pgid)

    def kill_all(self) -> None:
        pids: List[int] = []
        for path in self.pidfiles:
            try:
                pids.append(int(path.read_text().strip()))
            except (OSError, ValueError):
                pass
        for pgid in self.groups + pids:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for process in self.popens:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=WAIT_TIMEOUT)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def reaper() -> Iterator[Reaper]:
    """A :class:`Reaper` that kills what the test registered, even on failure."""
    tracker = Reaper()
    try:
        yield tracker
    finally:
        tracker.kill_all()


def start_redo(tree: Tree, *args: str, env: Optional[dict] = None, ignore_sigint: bool = False) -> subprocess.Popen:
    """Start ``redo ARGS`` in a session of its own, with captured output;
    with ``ignore_sigint``, as a shell starts a background command."""
    full_env = dict(tree.env)
    if env:
        full_env.update(env)
    return subprocess.Popen(
        ["redo", *args],
        cwd=tree.root,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None,
    )


def run_until_exit(tree: Tree, *args: str, env: Optional[dict] = None) -> Tuple[Result, float]:
    """Run ``redo ARGS`` and return when redo's own process exits, with the
    seconds it took. Output goes to files, so a background process that
    keeps redo's stderr open cannot make the test wait for it."""
    full_env = dict(tree.env)
    if env:
        full_env.update(env)
    outputs = tree.root.parent
    with open(outputs / "redo.stdout", "w+") as stdout, open(outputs / "redo.stderr", "w+") as stderr:
        started = time.monotonic()
        process = subprocess.Popen(
            ["redo", *args],
            cwd=tree.root,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            returncode = process.wait(timeout=WAIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"redo {' '.join(args)} did not exit within {WAIT_TIMEOUT} s")
        elapsed = time.monotonic() - started
        stdout.seek(0)
        stderr.seek(0)
        return Result(["redo", *args], returncode, stdout.read(), stderr.read()), elapsed


def wait_for_file(path: Path, process: Optional[subprocess.Popen] = None) -> None:
    """Wait until ``path`` exists; fail early when ``process`` exits first."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not path.exists():
        if process is not None and process.poll() is not None:
            output = process.communicate()
            pytest.fail(f"redo exited with {process.returncode} before {path.name} appeared: {output}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear within {WAIT_TIMEOUT} s")
        time.sleep(0.02)


def read_pid(tree: Tree, name: str) -> int:
    return int(tree.read(name).strip())


def group_members(pgid: int) -> List[int]:
    """Return the live (not zombie) processes of a process group."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append(int(entry))
    return members


def wait_until_group_gone(pgid: int) -> List[int]:
    """Wait up to GONE_TIMEOUT seconds for a process group to empty, and
    return the members that are still alive."""
    deadline = time.monotonic() + GONE_TIMEOUT
    members = group_members(pgid)
    while members and time.monotonic() < deadline:
        time.sleep(0.05)
        members = group_members(pgid)
    return members


# Daemons and background processes.


@pytest.mark.parametrize("env", PIDFD_MODES)
def test_daemon_does_not_delay_redo(tree: Tree, reaper: Reaper, env: dict) -> None:
    tree.write("daemon.py", DAEMON_SCRIPT)
    tree.write(
        "server.do",
        """
        echo $$ > script.pid
        python3 daemon.py "$PWD/daemon.pid"
        while [ ! -e daemon.pid ]; do sleep 0.01; done
        echo up > $3
    """,
    )
    reaper.track_pidfile(tree.path("script.pid"))
    reaper.track_pidfile(tree.path("daemon.pid"))

    result, elapsed = run_until_exit(tree, "server", env=env)

    assert result.returncode == 0, str(result)
    assert tree.read("server") == "up\n"
    # The daemon sleeps 30 s, so waiting for it would take at least that long.
    assert elapsed < 10, f"redo took {elapsed:.1f} s"
    assert is_alive(read_pid(tree, "daemon.pid"))


def test_late_detaching_child_unreported(tree: Tree, reaper: Reaper) -> None:
    # The script ends right after starting it, and the child is still in the
    # script's process group for a few milliseconds before it calls setsid().
    for attempt in range(3):
        tree.write(
            f"detach{attempt}.do",
            f"""
            echo x > $3
            (sleep 0.005; exec setsid sleep 30) > /dev/null 2>&1 &
            echo $! > detach{attempt}.pid
        """,
        )
        reaper.track_pidfile(tree.path(f"detach{attempt}.pid"))

        result, elapsed = run_until_exit(tree, f"detach{attempt}")

        assert result.returncode == 0, str(result)
        assert elapsed < 10, f"redo took {elapsed:.1f} s"
        assert "left processes running" not in result.stderr, str(result)
        assert is_alive(read_pid(tree, f"detach{attempt}.pid"))


def test_late_stdout_stays_out_of_target(tree: Tree, reaper: Reaper) -> None:
    # The child writes to the script's stdout after the script exits: first
    # within the moment redo waits for it to leave, then later.
    tree.write(
        "bg.do",
        """
        echo first
        (sleep 0.01; echo late; sleep 0.3; echo later) &
        echo $! > bg.pid
    """,
    )
    reaper.track_pidfile(tree.path("bg.pid"))

    result, elapsed = run_until_exit(tree, "bg")
    time.sleep(0.5)

    assert result.returncode == 0, str(result)
    assert tree.read("bg") == "first\n"


def test_background_child_reported_not_awaited(tree: Tree, reaper: Reaper) -> None:
    tree.write(
        "bg.do",
        """
        echo $$ > script.pid
        sleep 30 > sleep.out &
        echo $! > sleep.pid
        echo done > $3
    """,
    )
    reaper.track_pidfile(tree.path("script.pid"))
    reaper.track_pidfile(tree.path("sleep.pid"))

    result, elapsed = run_until_exit(tree, "bg")

    assert result.returncode == 0, str(result)
    assert tree.read("bg") == "done\n"
    assert elapsed < 10, f"redo took {elapsed:.1f} s"
    sleep_pid = read_pid(tree, "sleep.pid")
    assert is_alive(sleep_pid)
    warning = (
        f"redo: warning: bg.do for 'bg' exited but left processes running: {sleep_pid} (sleep); "
        "not waiting for them (--wait-background waits)"
    )
    warnings = [line for line in result.stderr.splitlines() if line.startswith("redo: warning:")]
    assert warnings == [warning], str(result)


@pytest.mark.parametrize(
    "options, env",
    [
        pytest.param(["--wait-background"], {}, id="option"),
        pytest.param([], {"REDORS_WAIT_BACKGROUND": "1"}, id="environment"),
    ],
)
def test_wait_background_waits_for_children(tree: Tree, reaper: Reaper, options: list, env: dict) -> None:
    tree.write(
        "bg.do",
        """
        echo $$ > script.pid
        (sleep 1.5; echo late > late.txt) >/dev/null 2>&1 &
        echo done > $3
    """,
    )
    reaper.track_pidfile(tree.path("script.pid"))

    result, elapsed = run_until_exit(tree, *options, "bg", env=env)

    assert result.returncode == 0, str(result)
    assert tree.read("bg") == "done\n"
    assert tree.exists("late.txt"), f"redo returned after {elapsed:.1f} s, before the child finished"
    assert elapsed >= 1.4, f"redo took {elapsed:.1f} s"
    assert "left processes running" not in result.stderr, str(result)


def test_background_child_not_awaited_by_default(tree: Tree, reaper: Reaper) -> None:
    tree.write(
        "bg.do",
        """
        echo $$ > script.pid
        (sleep 1.5; echo late > late.txt) >/dev/null 2>&1 &
        echo done > $3
    """,
    )
    reaper.track_pidfile(tree.path("script.pid"))

    result, elapsed = run_until_exit(tree, "bg")

    assert result.returncode == 0, str(result)
    assert not tree.exists("late.txt"), f"redo waited {elapsed:.1f} s for the background child"
    assert "left processes running" in result.stderr, str(result)


@pytest.mark.parametrize("env", PIDFD_MODES)
def test_script_waiting_for_own_child_finishes(tree: Tree, reaper: Reaper, env: dict) -> None:
    tree.write(
        "waiter.do",
        """
        echo $$ > script.pid
        (sleep 0.2; echo child > $3) &
        wait
        echo parent >> $3
    """,
    )
    reaper.track_pidfile(tree.path("script.pid"))

    process = reaper.track_popen(start_redo(tree, "waiter", env=env))
    try:
        _, stderr = process.communicate(timeout=WAIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"redo did not finish within {WAIT_TIMEOUT} s: the script hangs in 'wait'")

    assert process.returncode == 0, stderr
    assert tree.read("waiter") == "child\nparent\n"


# What a job inherits.


@pytest.mark.parametrize("env", PIDFD_MODES)
def test_job_sees_only_standard_descriptors(tree: Tree, env: dict) -> None:
    tree.write("fds.do", f'python3 -c "{LIST_FDS}" > $3\n')
    # The same listing run by the test with close_fds=True: 0, 1, 2 and the
    # descriptor that os.listdir opens for itself.
    baseline = fd_listing(tree)

    tree.redo("fds", env=env)

    assert baseline == "[0, 1, 2, 3]\n"
    assert tree.read("fds") == baseline


def test_job_stdin_is_dev_null(tree: Tree) -> None:
    tree.write(
        "input.do",
        """
        readlink /proc/self/fd/0 > $3
        cat >> $3
    """,
    )

    tree.redo("input", stdin="data that the job must not read\n")

    assert tree.read("input") == "/dev/null\n"


@pytest.mark.parametrize("env", PIDFD_MODES)
def test_job_starts_with_empty_signal_mask(tree: Tree, env: dict) -> None:
    # exec keeps the job's own process, so the mask printed is the one the
    # job started with. A blocked SIGINT or SIGTERM would survive into every
    # background process and make it immune to Ctrl-C and to redo's stop.
    tree.write(
        "mask.do",
        """
        exec python3 -c "import signal as s; print(sorted(int(n) for n in s.pthread_sigmask(s.SIG_BLOCK, [])))" > $3
    """,
    )

    tree.redo("mask", env=env)

    assert tree.read("mask") == "[]\n"


# Stopping redo with SIGINT or SIGTERM.

SLOW_SCRIPT = """
    echo $$ > script.pid
    if [ -e go ]; then echo finished > $3; exit 0; fi
    sleep 30 >/dev/null 2>&1 &
    echo $! > background.pid
    echo partial > $3
    echo partial
    touch started
    sleep 30
    echo finished > $3
"""


@pytest.mark.parametrize(
    "signal_number, status, env",
    [
        pytest.param(signal.SIGINT, 130, {}, id="SIGINT"),
        pytest.param(signal.SIGTERM, 143, {}, id="SIGTERM"),
        pytest.param(signal.SIGINT, 130, {"REDORS_NO_PIDFD": "1"}, id="SIGINT-no-pidfd"),
        pytest.param(signal.SIGTERM, 143, {"REDORS_NO_PIDFD": "1"}, id="SIGTERM-no-pidfd"),
    ],
)
def test_stop_signal_ends_script_group(tree: Tree, reaper: Reaper, signal_number: int, status: int, env: dict) -> None:
    tree.write("slow.do", SLOW_SCRIPT)
    reaper.track_pidfile(tree.path("script.pid"))
    reaper.track_pidfile(tree.path("background.pid"))

    process = reaper.track_popen(start_redo(tree, "slow", env=env))
    reaper.track_group(process.pid)
    wait_for_file(tree.path("started"), process)
    script_pid = read_pid(tree, "script.pid")
    background_pid = read_pid(tree, "background.pid")
    os.killpg(process.pid, signal_number)
    try:
        _, stderr = process.communicate(timeout=WAIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"redo did not exit within {WAIT_TIMEOUT} s of signal {signal_number}")

    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    assert not tree.exists("slow")
    assert not tree.exists(".slow.redo3.tmp")
    assert not tree.exists(".slow.redo1.tmp")

    tree.path("go").touch()
    tree.redo("slow", env=env)
    assert tree.read("slow") == "finished\n"

    # Checked last, so that a survivor does not hide the checks above.
    assert wait_until_group_gone(script_pid) == []
    assert not is_alive(background_pid)


def test_sigint_stops_scripts_when_ignored_at_start(tree: Tree, reaper: Reaper) -> None:
    # A shell starts "redo &" with SIGINT ignored; the scripts must not
    # inherit that, or the SIGINT that redo forwards would not stop them.
    tree.write("slow.do", SLOW_SCRIPT)
    reaper.track_pidfile(tree.path("script.pid"))
    reaper.track_pidfile(tree.path("background.pid"))
    process = reaper.track_popen(start_redo(tree, "slow", ignore_sigint=True))
    wait_for_file(tree.path("started"), process)

    started = time.monotonic()
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=WAIT_TIMEOUT)

    assert process.returncode == 130, stderr
    assert time.monotonic() - started < 3, "the script outlived the grace period"


# Recovery after SIGKILL.

KILLABLE_SCRIPT = """
    echo $$ > script.pid
    redo-ifchange src
    if [ ! -e go ]; then
        echo partial > $3
        touch started
        sleep 30
    fi
    echo "built from $(cat src)" >> "$RUNLOG"
    cat src > $3
"""


@pytest.mark.parametrize("built_before", [False, True], ids=["first-build", "rebuild"])
def test_sigkill_leaves_usable_database(tree: Tree, reaper: Reaper, built_before: bool) -> None:
    tree.write("slow.do", KILLABLE_SCRIPT)
    tree.write("src", "v1\n")
    reaper.track_pidfile(tree.path("script.pid"))
    if built_before:
        tree.path("go").touch()
        tree.redo("slow")
        tree.path("go").unlink()
        tree.touch_later("src", "v2\n")
        tree.clear_runs()
    expected = "v2\n" if built_before else "v1\n"

    process = reaper.track_popen(start_redo(tree, "slow"))
    reaper.track_group(process.pid)
    wait_for_file(tree.path("started"), process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=WAIT_TIMEOUT)
    script_pid = read_pid(tree, "script.pid")
    try:
        os.killpg(script_pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    assert wait_until_group_gone(script_pid) == []

    tree.path("go").touch()
    result = tree.ifchange("slow")

    assert tree.read("slow") == expected
    assert tree.runs() == [f"built from {expected.strip()}"]
    assert "changed outside redo" not in result.stderr, str(result)
    assert not tree.exists(".slow.redo3.tmp")
    assert not tree.exists(".slow.redo1.tmp")
    again = tree.ifchange("slow")
    assert tree.runs() == [f"built from {expected.strip()}"], str(again)


def test_sigkill_socket_dir_removed_by_next_run(tree: Tree, reaper: Reaper) -> None:
    tree.write(
        "slow.do",
        """
        echo $$ > script.pid
        echo "$REDORS_ENGINE" > engine.path
        touch started
        sleep 30
    """,
    )
    tree.write("quick.do", "echo quick > $3\n")
    reaper.track_pidfile(tree.path("script.pid"))
    process = reaper.track_popen(start_redo(tree, "slow"))
    reaper.track_group(process.pid)
    wait_for_file(tree.path("started"), process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=WAIT_TIMEOUT)
    socket_dir = Path(tree.read("engine.path").strip()).parent
    assert socket_dir.is_dir()

    tree.redo("quick")

    assert not socket_dir.exists()


# REDORS_NO_PIDFD=1: failures behave as with pidfds.


@pytest.mark.parametrize("env", PIDFD_MODES)
def test_failures_reported_in_both_modes(tree: Tree, env: dict) -> None:
    tree.write("bad.do", "exit 7\n")
    tree.write("killed.do", "kill -9 $$\n")
    tree.write("good.do", "echo good > $3\n")

    bad = tree.run("redo", "bad", env=env)
    killed = tree.run("redo", "killed", env=env)
    good = tree.run("redo", "good", env=env)

    assert bad.returncode == 1, str(bad)
    assert "redo: error: cannot build 'bad': bad.do failed with exit status 7" in bad.stderr, str(bad)
    assert killed.returncode == 1, str(killed)
    assert "redo: error: cannot build 'killed': killed.do was killed by signal 9" in killed.stderr, str(killed)
    assert good.returncode == 0, str(good)
    assert tree.read("good") == "good\n"


# Many inner calls from one script.


def test_many_ifchange_calls_record_once(tree: Tree) -> None:
    tree.write("src", "source\n")
    tree.write(
        "many.do",
        """
        i=0
        while [ $i -lt 200 ]; do
            redo-ifchange src
            i=$((i + 1))
        done
        echo many >> "$RUNLOG"
        echo "$i calls" > $3
    """,
    )

    tree.redo("many", timeout=WAIT_TIMEOUT * 4)

    assert tree.read("many") == "200 calls\n"
    assert tree.runs() == ["many"]
    sources = tree.run("redo-sources").stdout.splitlines()
    assert sources.count("src") == 1, sources
    # The dependency table is internal, so a failure here may mean that its
    # layout changed rather than that the dependency was stored twice.
    database = sqlite3.connect(f"file:{tree.path('.redo/redors.db')}?mode=ro", uri=True)
    try:
        (count,) = database.execute(
            "SELECT COUNT(*) FROM deps d JOIN files t ON t.id = d.target JOIN files s ON s.id = d.dep "
            "WHERE t.path = CAST(? AS BLOB) AND s.path = CAST(? AS BLOB)",
            ("many", "src"),
        ).fetchone()
    finally:
        database.close()
    assert count == 1

    tree.ifchange("many")
    assert tree.runs() == ["many"]
    tree.touch_later("src", "changed\n")
    tree.ifchange("many")
    assert tree.runs() == ["many", "many"]
