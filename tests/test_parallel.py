"""Parallel builds with -j, REDORS_JOBS and --shuffle.

Also the GNU make jobserver, which redo serves to its scripts and joins when
make starts it (in the pipe and the named-fifo form), and several redo runs
on one tree at the same time."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, cast

import pytest

from conftest import LIST_FDS, Result, Tree, fd_listing, kill_group

# Limit, in seconds, of each wait for a process or a marker file. Only a
# broken (hanging) redors reaches it.
WAIT_TIMEOUT = 20

# A script that records when it starts and ends in the file named by
# $EVENTS, with a short sleep in between so that parallel runs overlap.
TIMED_SCRIPT = """
    echo "start $1 $(date +%s.%N)" >> "$EVENTS"
    sleep 0.3
    echo "end $1 $(date +%s.%N)" >> "$EVENTS"
    echo "$1" > $3
"""

# A make recipe line that records its run the same way as TIMED_SCRIPT,
# under the name of its make target ($@).
TIMED_RECIPE = (
    '\techo "start $@ $$(date +%s.%N)" >> "$$EVENTS"; sleep {seconds}; echo "end $@ $$(date +%s.%N)" >> "$$EVENTS"\n'
)

# Prints the descriptors open in the process that runs it, one line, sorted.

# Part of the warning that redo prints when MAKEFLAGS names a jobserver that
# redo cannot open.
JOBSERVER_WARNING = "cannot be used"


# Helpers.


def use_events(tree: Tree) -> Path:
    """Create the event file that TIMED_SCRIPT and TIMED_RECIPE append to,
    outside the project, and name it in $EVENTS for every command."""
    events = tree.root.parent / "events"
    events.write_text("")
    tree.env["EVENTS"] = str(events)
    return events


def read_intervals(events: Path) -> Dict[str, List[Tuple[float, float]]]:
    """Pair the start and end lines of each name into (start, end) intervals."""
    intervals: Dict[str, List[Tuple[float, float]]] = {}
    open_starts: Dict[str, float] = {}
    for line in events.read_text().splitlines():
        kind, name, stamp = line.split()
        if kind == "start":
            assert name not in open_starts, f"{name} started twice without ending:\n{events.read_text()}"
            open_starts[name] = float(stamp)
        else:
            assert name in open_starts, f"{name} ended without starting:\n{events.read_text()}"
            intervals.setdefault(name, []).append((open_starts.pop(name), float(stamp)))
    assert not open_starts, f"runs that never ended: {sorted(open_starts)}"
    return intervals


def max_overlap(events: Path) -> int:
    """Return the maximum number of recorded runs that were running at once.
    A run that ends at the same instant as another starts does not count as
    overlapping it."""
    points: List[Tuple[float, int]] = []
    for runs in read_intervals(events).values():
        for start, end in runs:
            points.append((start, 1))
            points.append((end, -1))
    # Ends (-1) sort before starts (+1) at equal times.
    points.sort()
    running = 0
    maximum = 0
    for _, step in points:
        running += step
        maximum = max(maximum, running)
    return maximum


def write_timed_targets(tree: Tree, names: List[str]) -> None:
    for name in names:
        tree.write(f"{name}.do", TIMED_SCRIPT)


def write_parent(tree: Tree, parent: str, children: List[str]) -> None:
    """Write PARENT.do, which requests all CHILDREN in one redo-ifchange."""
    tree.write(f"{parent}.do", f"redo-ifchange {' '.join(children)}\necho {parent} > $3\n")


def start_command(tree: Tree, *args: str, env: Optional[Dict[str, str]] = None) -> subprocess.Popen[str]:
    """Start a command in a session of its own, with captured text output."""
    full_env = dict(tree.env)
    if env:
        full_env.update(env)
    return subprocess.Popen(
        list(args),
        cwd=tree.root,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(process: subprocess.Popen[str]) -> Result:
    """Wait for a started command and return its result."""
    # start_command passes the arguments as a list of strings.
    args = cast(List[str], process.args)
    try:
        stdout, stderr = process.communicate(timeout=WAIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(args)} did not exit within {WAIT_TIMEOUT} s")
    return Result(args, process.returncode, stdout, stderr)


def wait_for_files(paths: List[Path], process: subprocess.Popen[str]) -> None:
    """Wait until every path exists; fail early when ``process`` exits first."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not all(path.exists() for path in paths):
        if process.poll() is not None:
            stdout, stderr = process.communicate()
            pytest.fail(f"the command exited with {process.returncode} too early:\n{stdout}{stderr}")
        if time.monotonic() > deadline:
            missing = [path.name for path in paths if not path.exists()]
            pytest.fail(f"{missing} did not appear within {WAIT_TIMEOUT} s")
        time.sleep(0.02)


class Processes:
    """Started processes and process groups, killed when the test ends."""

    def __init__(self) -> None:
        self.popens: List[subprocess.Popen[str]] = []
        self.pidfiles: List[Path] = []

    def start(self, tree: Tree, *args: str, env: Optional[Dict[str, str]] = None) -> subprocess.Popen[str]:
        process = start_command(tree, *args, env=env)
        self.popens.append(process)
        return process

    def track_pidfile(self, path: Path) -> None:
        """Kill, at the end, the process group of the pid that a script writes to ``path``."""
        self.pidfiles.append(path)

    def kill_all(self) -> None:
        for path in self.pidfiles:
            try:
                kill_group(int(path.read_text().strip()))
            except (OSError, ValueError):
                pass
        for process in self.popens:
            kill_group(process.pid)
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=WAIT_TIMEOUT)


@pytest.fixture
def processes() -> Iterator[Processes]:
    tracker = Processes()
    try:
        yield tracker
    finally:
        tracker.kill_all()


class FifoJobserver:
    """A jobserver in the named-fifo form of GNU make 4.4, created by the test.

    The test keeps the fifo open for reading and writing, so reads never see
    end-of-file and writes never block on a missing reader."""

    def __init__(self, directory: Path, tokens: int) -> None:
        self.path = directory / "jobserver.fifo"
        os.mkfifo(self.path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        os.write(self.fd, b"+" * tokens)

    def makeflags(self, jobs: int) -> str:
        return f" -j{jobs} --jobserver-auth=fifo:{self.path}"

    def drain(self) -> bytes:
        """Read every token that is in the fifo now."""
        tokens = b""
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                return tokens
            if not chunk:
                return tokens
            tokens += chunk

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def fifo_jobserver(tree: Tree) -> Iterator[FifoJobserver]:
    """A fifo jobserver that contains two tokens."""
    jobserver = FifoJobserver(tree.root.parent, tokens=2)
    try:
        yield jobserver
    finally:
        jobserver.close()


def jobserver_fds(makeflags: str) -> Tuple[int, int]:
    """Return the two descriptors that --jobserver-auth=R,W names."""
    for word in makeflags.split():
        if word.startswith("--jobserver-auth="):
            read_fd, write_fd = word[len("--jobserver-auth=") :].split(",")
            return int(read_fd), int(write_fd)
    pytest.fail(f"no --jobserver-auth in MAKEFLAGS {makeflags!r}")


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "the output is empty"
    return lines[-1]


# How many scripts run at once.

FOUR_TARGETS = ["a", "b", "c", "d"]
SIX_TARGETS = ["a", "b", "c", "d", "e", "f"]


@pytest.mark.parametrize(
    "options, env, expected",
    [
        pytest.param(["-j", "3"], {}, 3, id="j3"),
        pytest.param(["--jobs", "2"], {}, 2, id="jobs2"),
        pytest.param(["-j2"], {"REDORS_JOBS": "4"}, 2, id="option-over-environment"),
        pytest.param([], {"REDORS_JOBS": "3"}, 3, id="environment"),
        pytest.param([], {}, 1, id="default"),
    ],
)
def test_jobs_limit_scripts_at_once(tree: Tree, options: List[str], env: Dict[str, str], expected: int) -> None:
    events = use_events(tree)
    write_timed_targets(tree, SIX_TARGETS)

    tree.redo(*options, *SIX_TARGETS, env=env)

    assert max_overlap(events) == expected, events.read_text()
    for name in SIX_TARGETS:
        assert tree.read(name) == f"{name}\n"


def test_jobs_auto_runs_one_per_cpu(tree: Tree) -> None:
    events = use_events(tree)
    cpus = os.cpu_count() or 1
    names = [f"t{index}" for index in range(cpus + 2)]
    write_timed_targets(tree, names)

    tree.redo(*names, env={"REDORS_JOBS": "auto"})

    assert max_overlap(events) == cpus, events.read_text()


def test_invalid_jobs_variable_exits_two(tree: Tree) -> None:
    tree.write("x.do", 'echo x >> "$RUNLOG"\necho x > $3\n')

    result = tree.run("redo", "x", env={"REDORS_JOBS": "zero"})

    assert result.returncode == 2, str(result)
    assert "REDORS_JOBS" in result.stderr, str(result)
    assert tree.runs() == []
    assert not tree.exists("x")


@pytest.mark.parametrize("jobs, expected", [("1", 1), ("2", 2), ("4", 4)])
def test_ifchange_children_build_in_parallel(tree: Tree, jobs: str, expected: int) -> None:
    events = use_events(tree)
    write_timed_targets(tree, SIX_TARGETS)
    write_parent(tree, "all", SIX_TARGETS)

    tree.redo("-j", jobs, "all")

    assert max_overlap(events) == expected, events.read_text()
    assert tree.read("all") == "all\n"


def test_nested_chain_finishes_at_one_job(tree: Tree) -> None:
    tree.write("all.do", 'redo-ifchange a\necho all >> "$RUNLOG"\ncat a > $3\n')
    tree.write("a.do", 'redo-ifchange b\necho a >> "$RUNLOG"\ncat b > $3\n')
    tree.write("b.do", 'redo-ifchange c\necho b >> "$RUNLOG"\ncat c > $3\n')
    tree.write("c.do", 'echo c >> "$RUNLOG"\necho leaf > $3\n')

    tree.redo("-j1", "all", timeout=WAIT_TIMEOUT)

    assert tree.runs() == ["c", "b", "a", "all"]
    assert tree.read("all") == "leaf\n"


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 4096, reason="hard descriptor limit below 4096")
def test_deep_chain_passes_soft_descriptor_limit(tree: Tree) -> None:
    # 300 scripts wait at once, each holding a few of redo's descriptors.
    tree.write(
        "default.do",
        """
        k=${1#n}
        if [ "$k" -gt 0 ]; then redo-ifchange "n$((k - 1))"; fi
        echo "$k" > $3
    """,
    )

    result = tree.run("sh", "-c", "ulimit -Sn 1024 && redo n300", timeout=WAIT_TIMEOUT)

    assert result.returncode == 0, str(result)
    assert tree.read("n300") == "300\n"


def test_waiting_parent_frees_its_slot(tree: Tree) -> None:
    # At -j2 the parent uses one slot while it runs. If it kept that slot
    # while it waits in redo-ifchange, only one child could run at a time.
    events = use_events(tree)
    write_timed_targets(tree, FOUR_TARGETS)
    write_parent(tree, "all", FOUR_TARGETS)

    tree.redo("-j2", "all", timeout=WAIT_TIMEOUT)

    assert max_overlap(events) == 2, events.read_text()
    assert tree.read("all") == "all\n"


def test_shuffle_varies_build_order(tree: Tree) -> None:
    names = [f"t{index}" for index in range(10)]
    for name in names:
        tree.write(f"{name}.do", f'echo {name} >> "$RUNLOG"\necho {name} > $3\n')
    write_parent(tree, "all", names)

    orders = []
    for _ in range(4):
        for name in names + ["all"]:
            if tree.exists(name):
                tree.path(name).unlink()
        tree.clear_runs()
        tree.redo("--shuffle", "-j1", "all")
        orders.append(tuple(tree.runs()))

    for order in orders:
        assert sorted(order) == sorted(names), order
    # A uniform shuffle gives four equal orders of ten targets with a
    # chance of (1/10!)^3, so equal orders mean that nothing was shuffled.
    assert len(set(orders)) >= 2, orders


# The jobserver that redo serves to its scripts.

JOBSERVER_PROBE = """
    printf '%s\\n' "${MAKEFLAGS-unset}" > $3
    ls /proc/$$/fd | tr '\\n' ' ' >> $3
"""


def test_parallel_script_gets_jobserver(tree: Tree) -> None:
    tree.write("probe.do", JOBSERVER_PROBE)

    tree.redo("-j3", "probe")

    makeflags, fd_listing = tree.read("probe").splitlines()
    read_fd, write_fd = jobserver_fds(makeflags)
    words = makeflags.split()
    assert "-j3" in words, makeflags
    assert f"--jobserver-fds={read_fd},{write_fd}" in words, makeflags
    open_fds = fd_listing.split()
    assert str(read_fd) in open_fds, fd_listing
    assert str(write_fd) in open_fds, fd_listing


@pytest.mark.parametrize("options", [[], ["-j1"]], ids=["no-option", "j1"])
def test_serial_script_gets_no_jobserver(tree: Tree, options: List[str]) -> None:
    tree.write("probe.do", 'echo "${MAKEFLAGS-unset}" > $3\n')
    tree.write("fds.do", f'python3 -c "{LIST_FDS}" > $3\n')
    # The same listing run by the test with close_fds=True.
    baseline = fd_listing(tree)

    tree.redo(*options, "probe", "fds")

    assert tree.read("probe") == "unset\n"
    assert tree.read("fds") == baseline


def write_slow_makefile(tree: Tree, name: str, targets: List[str], seconds: float) -> None:
    rules = [f"all: {' '.join(targets)}\n", f".PHONY: all {' '.join(targets)}\n"]
    for target in targets:
        rules.append(f"{target}:\n" + TIMED_RECIPE.format(seconds=seconds))
    tree.write(name, "".join(rules))


def setup_make_beside_scripts(tree: Tree, make_command: str) -> Path:
    events = use_events(tree)
    write_slow_makefile(tree, "mk/Makefile", ["r1", "r2", "r3", "r4"], 0.3)
    # made.do itself is not logged: while make runs, made.do's slot is the
    # implicit token that make uses for its first recipe.
    tree.write("made.do", f"{make_command} -C mk all\necho made > $3\n")
    write_timed_targets(tree, ["x", "y"])
    write_parent(tree, "all", ["made", "x", "y"])
    return events


def test_make_in_script_shares_slots(tree: Tree) -> None:
    events = setup_make_beside_scripts(tree, "make -s")

    result = tree.redo("-j3", "all", timeout=WAIT_TIMEOUT)

    assert max_overlap(events) <= 3, f"{events.read_text()}{result}"
    assert sorted(read_intervals(events)) == ["r1", "r2", "r3", "r4", "x", "y"]
    assert "jobserver" not in result.stderr, str(result)


def test_make_with_own_jobs_leaves_jobserver(tree: Tree) -> None:
    # GNU make reads an explicit -jN given to a make that inherited a
    # jobserver as a request for a jobserver of its own (make 4.3 warns
    # "-jN forced in submake: resetting jobserver mode"), so such a make
    # does not share redo's slots; the build still succeeds.
    events = setup_make_beside_scripts(tree, "make -j8 -s")

    result = tree.redo("-j3", "all", timeout=WAIT_TIMEOUT)

    assert sorted(read_intervals(events)) == ["r1", "r2", "r3", "r4", "x", "y"]
    assert "forced in submake" in result.stderr, str(result)


def test_redo_under_make_takes_tokens(tree: Tree) -> None:
    events = use_events(tree)
    write_timed_targets(tree, SIX_TARGETS)
    write_parent(tree, "all", SIX_TARGETS)
    tree.write("Makefile", "all:\n\t+redo all\n")

    result = tree.run("make", "-j4", "-s", timeout=WAIT_TIMEOUT)

    assert result.returncode == 0, str(result)
    assert max_overlap(events) == 4, f"{events.read_text()}{result}"
    assert JOBSERVER_WARNING not in result.stderr, str(result)


def test_fifo_jobserver_limits_scripts(tree: Tree, fifo_jobserver: FifoJobserver) -> None:
    events = use_events(tree)
    write_timed_targets(tree, SIX_TARGETS)
    write_parent(tree, "all", SIX_TARGETS)

    result = tree.run("redo", "all", env={"MAKEFLAGS": fifo_jobserver.makeflags(3)}, timeout=WAIT_TIMEOUT)

    assert result.returncode == 0, str(result)
    overlap = max_overlap(events)
    # Two tokens in the fifo plus the implicit one that every client has.
    assert overlap <= 3, events.read_text()
    assert overlap > 1, "redo took no token from the fifo"
    assert fifo_jobserver.drain() == b"++"


def test_fifo_tokens_return_after_failure(tree: Tree, fifo_jobserver: FifoJobserver) -> None:
    write_timed_targets(tree, SIX_TARGETS)
    tree.write("bad.do", "sleep 0.2\nexit 4\n")
    write_parent(tree, "all", SIX_TARGETS[:3] + ["bad"] + SIX_TARGETS[3:])
    use_events(tree)

    result = tree.run("redo", "all", env={"MAKEFLAGS": fifo_jobserver.makeflags(3)}, timeout=WAIT_TIMEOUT)

    assert result.returncode == 1, str(result)
    assert fifo_jobserver.drain() == b"++"


def test_fifo_tokens_return_after_sigint(tree: Tree, fifo_jobserver: FifoJobserver, processes: Processes) -> None:
    for name in FOUR_TARGETS:
        tree.write(f"{name}.do", "echo $$ > $1.pid\ntouch $1.started\nsleep 30\necho $1 > $3\n")
        processes.track_pidfile(tree.path(f"{name}.pid"))
    write_parent(tree, "all", FOUR_TARGETS)

    process = processes.start(tree, "redo", "all", env={"MAKEFLAGS": fifo_jobserver.makeflags(3)})
    # With two tokens and the implicit one, three scripts run and hold
    # both tokens when the signal comes.
    wait_for_files([tree.path(f"{name}.started") for name in FOUR_TARGETS[:3]], process)
    os.killpg(process.pid, signal.SIGINT)
    result = finish(process)

    assert result.returncode == 130, str(result)
    assert fifo_jobserver.drain() == b"++"


@pytest.mark.parametrize("how", ["makeflags", "low-descriptors", "make-rule-without-plus"])
def test_unusable_jobserver_warns_runs_serially(tree: Tree, how: str) -> None:
    events = use_events(tree)
    write_timed_targets(tree, FOUR_TARGETS)
    tree.write("probe.do", 'echo "${MAKEFLAGS-unset}" > $3\n')
    write_parent(tree, "all", FOUR_TARGETS + ["probe"])

    if how in ("makeflags", "low-descriptors"):
        # Nothing is open on these, because Popen closes every descriptor
        # above 2. Numbers 3 and 4 are the first that redo itself opens.
        fds = "33,34" if how == "makeflags" else "3,4"
        result = tree.run("redo", "all", env={"MAKEFLAGS": f" -j4 --jobserver-auth={fds}"}, timeout=WAIT_TIMEOUT)
    else:
        # Without '+', make closes its jobserver descriptors in the recipe
        # but still names them in MAKEFLAGS.
        tree.write("Makefile", "all:\n\tredo all\n")
        result = tree.run("make", "-j4", "-s", timeout=WAIT_TIMEOUT)

    assert result.returncode == 0, str(result)
    warnings = [line for line in result.stderr.splitlines() if JOBSERVER_WARNING in line]
    assert len(warnings) == 1, str(result)
    assert "'+'" in warnings[0], str(result)
    assert "not a pipe" not in warnings[0], str(result)
    assert max_overlap(events) == 1, f"{events.read_text()}{result}"
    assert "--jobserver-auth" not in tree.read("probe"), tree.read("probe")


def test_script_running_make_has_valid_jobserver(tree: Tree) -> None:
    events = use_events(tree)
    write_slow_makefile(tree, "mk/Makefile", ["r1", "r2", "r3", "r4"], 0.5)
    tree.write("made.do", "make -s -C mk all\necho made > $3\n")

    result = tree.redo("-j3", "made", timeout=WAIT_TIMEOUT)

    assert tree.read("made") == "made\n"
    assert sorted(read_intervals(events)) == ["r1", "r2", "r3", "r4"]
    assert "jobserver unavailable" not in result.stderr, str(result)
    assert "Bad file descriptor" not in result.stderr, str(result)


def test_make_redo_make_nesting_works(tree: Tree) -> None:
    events = use_events(tree)
    write_slow_makefile(tree, "mk/Makefile", ["r1", "r2", "r3", "r4"], 0.3)
    tree.write("inner.do", "make -s -C mk all\necho inner > $3\n")
    tree.write("outer.mk", "all:\n\t+redo inner\n")

    result = tree.run("make", "-s", "-j2", "-f", "outer.mk", timeout=WAIT_TIMEOUT)

    assert result.returncode == 0, str(result)
    assert tree.read("inner") == "inner\n"
    assert sorted(read_intervals(events)) == ["r1", "r2", "r3", "r4"]
    assert max_overlap(events) <= 2, f"{events.read_text()}{result}"
    assert "jobserver unavailable" not in result.stderr, str(result)
    assert "Bad file descriptor" not in result.stderr, str(result)
    assert JOBSERVER_WARNING not in result.stderr, str(result)


# Several redo runs on one tree.

COUNT_SCRIPT = """
    echo "start $1 $(date +%s.%N)" >> "$EVENTS"
    echo count >> "$RUNLOG"
    sleep 0.4
    echo "end $1 $(date +%s.%N)" >> "$EVENTS"
    echo counted > $3
"""


def test_simultaneous_ifchange_builds_once(tree: Tree, processes: Processes) -> None:
    use_events(tree)
    tree.write("count.do", COUNT_SCRIPT)

    first = processes.start(tree, "redo-ifchange", "count")
    second = processes.start(tree, "redo-ifchange", "count")
    first_result = finish(first)
    second_result = finish(second)

    assert first_result.returncode == 0, str(first_result)
    assert second_result.returncode == 0, str(second_result)
    assert tree.runs() == ["count"]
    assert tree.read("count") == "counted\n"


def test_target_built_meanwhile_is_not_rebuilt(tree: Tree, processes: Processes) -> None:
    # The first run checks x and queues it behind slow; the second run builds
    # x meanwhile. When the first run gets to x, it must use that build.
    tree.write(
        "slow.do",
        """
        touch slow.started
        while [ ! -e go ]; do sleep 0.02; done
        echo slow > $3
    """,
    )
    tree.write("x.do", 'echo "$1" >> "$RUNLOG"\necho x > $3\n')

    first = processes.start(tree, "redo-ifchange", "slow", "x")
    wait_for_files([tree.path("slow.started")], first)
    second = tree.run("redo-ifchange", "x")
    tree.write("go", "")
    first_result = finish(first)

    assert second.returncode == 0, str(second)
    assert first_result.returncode == 0, str(first_result)
    assert tree.runs() == ["x"]
    assert "redo    x" not in first_result.stderr, str(first_result)


def test_simultaneous_forced_builds_serialize(tree: Tree, processes: Processes) -> None:
    events = use_events(tree)
    tree.write("count.do", COUNT_SCRIPT)

    first = processes.start(tree, "redo", "count")
    second = processes.start(tree, "redo", "count")
    first_result = finish(first)
    second_result = finish(second)

    assert first_result.returncode == 0, str(first_result)
    assert second_result.returncode == 0, str(second_result)
    kinds = [line.split()[0] for line in events.read_text().splitlines()]
    assert kinds == ["start", "end", "start", "end"], events.read_text()
    assert max_overlap(events) == 1, events.read_text()


def test_debug_locks_reports_waiting(tree: Tree, processes: Processes) -> None:
    use_events(tree)
    tree.write(
        "count.do",
        """
        touch count.started
        sleep 0.6
        echo counted > $3
    """,
    )

    first = processes.start(tree, "redo", "count")
    wait_for_files([tree.path("count.started")], first)
    second = processes.start(tree, "redo", "--debug-locks", "count")
    second_result = finish(second)
    first_result = finish(first)

    assert first_result.returncode == 0, str(first_result)
    assert second_result.returncode == 0, str(second_result)
    message = "redo: lock: waiting for 'count': another redo is building it"
    assert message in second_result.stderr.splitlines(), str(second_result)


def test_killed_run_releases_lock(tree: Tree, processes: Processes) -> None:
    tree.write(
        "count.do",
        """
        echo $$ > script.pid
        if [ ! -e go ]; then
            touch count.started
            sleep 30
        fi
        sleep 0.3
        echo rebuilt >> "$RUNLOG"
        echo rebuilt > $3
    """,
    )
    processes.track_pidfile(tree.path("script.pid"))

    killed = processes.start(tree, "redo", "count")
    wait_for_files([tree.path("count.started")], killed)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=WAIT_TIMEOUT)
    # The script may run in a process group of its own.
    kill_group(int(tree.read("script.pid").strip()))

    tree.path("go").touch()
    started = time.monotonic()
    result = tree.run("redo", "count", timeout=WAIT_TIMEOUT)
    elapsed = time.monotonic() - started

    assert result.returncode == 0, str(result)
    assert elapsed < 5, f"redo took {elapsed:.1f} s: it waited for the killed run's lock"
    assert tree.runs() == ["rebuilt"]
    assert tree.read("count") == "rebuilt\n"


@pytest.mark.parametrize("options", [[], ["-j3"]], ids=["serial", "j3"])
def test_keep_going_builds_other_children(tree: Tree, options: List[str]) -> None:
    write_parent(tree, "all", ["bad", "good", "other"])
    tree.write("bad.do", 'echo bad >> "$RUNLOG"\nexit 3\n')
    tree.write("good.do", 'echo good >> "$RUNLOG"\necho good > $3\n')
    tree.write("other.do", 'echo other >> "$RUNLOG"\necho other > $3\n')

    result = tree.run("redo", "-k", *options, "all", timeout=WAIT_TIMEOUT)

    assert result.returncode == 1, str(result)
    assert tree.read("good") == "good\n"
    assert tree.read("other") == "other\n"
    assert not tree.exists("all")
    summary = last_line(result.stderr)
    prefix = "redo: error: these targets failed: "
    assert summary.startswith(prefix), str(result)
    assert sorted(summary[len(prefix) :].split(", ")) == ["all", "bad"], str(result)
