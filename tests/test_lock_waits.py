"""A run that waits long for another run's target says so."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from conftest import Tree


def test_long_wait_is_reported(tree: Tree) -> None:
    tree.write(
        "slow.do",
        """
        touch started
        sleep 12
        echo done > $3
        """,
    )
    first = subprocess.Popen(
        ["redo", "slow"],
        cwd=tree.root,
        env=tree.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not tree.exists("started"):
            assert time.monotonic() < deadline, "slow.do did not start"
            time.sleep(0.05)
        second = tree.run("redo-ifchange", "slow", timeout=30)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)

    assert second.returncode == 0, str(second)
    assert "redo: warning: still waiting for 'slow' after 10 s" in second.stderr
    assert second.stderr.count("still waiting") == 1
    assert tree.read("slow") == "done\n"
