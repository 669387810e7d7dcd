"""The Python front: the ``redors`` API, ``python -m redors``, console
scripts called inside a .do, the environment that a job gets, and the
installed console scripts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from conftest import BIN_DIR, Result, Tree

PYTHON = sys.executable


def run_python(tree: Tree, code: str, **kwargs: Any) -> Result:
    """Run Python code with the venv's interpreter, as a separate process in
    the test environment."""
    return tree.run(PYTHON, "-c", code, **kwargs)


def python_json(tree: Tree, code: str, **kwargs: Any) -> Any:
    """Run Python code that prints one JSON document and return it decoded."""
    result = run_python(tree, code, **kwargs)
    assert result.returncode == 0, str(result)
    return json.loads(result.stdout)


def write_logged_all(tree: Tree) -> None:
    """Write all, which needs a. Both scripts log their name when they run."""
    tree.write(
        "all.do",
        """
        echo all >> "$RUNLOG"
        redo-ifchange a
        cat a > $3
    """,
    )
    tree.write(
        "a.do",
        """
        echo a >> "$RUNLOG"
        echo from-a > $3
    """,
    )


# redors.build


def test_build_returns_ok_result(tree: Tree) -> None:
    write_logged_all(tree)

    result = python_json(
        tree,
        f"""
import json, redors
result = redors.build(["all"], cwd={str(tree.root)!r})
print(json.dumps({{"status": result.status, "failed": result.failed, "ok": result.ok,
                  "type": type(result).__name__}}))
""",
    )

    assert result == {"status": 0, "failed": [], "ok": True, "type": "BuildResult"}
    assert tree.read("all") == "from-a\n"
    assert tree.runs() == ["all", "a"]


def test_build_lists_failed_targets(tree: Tree) -> None:
    tree.write("sub/bad.do", "exit 4\n")

    result = python_json(
        tree,
        f"""
import json, redors
result = redors.build(["sub/bad"], cwd={str(tree.root)!r})
print(json.dumps({{"status": result.status, "failed": result.failed, "ok": result.ok}}))
""",
    )

    assert result == {"status": 1, "failed": ["sub/bad"], "ok": False}
    assert not tree.exists("sub/bad")


def test_build_missing_target_fails(tree: Tree) -> None:
    result = python_json(
        tree,
        f"""
import json, redors
result = redors.build(["nosuch"], cwd={str(tree.root)!r})
print(json.dumps({{"status": result.status, "ok": result.ok}}))
""",
    )

    assert result == {"status": 1, "ok": False}
    assert not tree.exists("nosuch")


def test_build_without_force_skips_current(tree: Tree) -> None:
    write_logged_all(tree)
    code = f"""
import json, redors
first = redors.build(["all"], cwd={str(tree.root)!r})
second = redors.build(["all"], cwd={str(tree.root)!r}, force=False)
third = redors.build(["all"], cwd={str(tree.root)!r})
print(json.dumps([first.status, second.status, third.status]))
"""

    statuses = python_json(tree, code)

    assert statuses == [0, 0, 0]
    # The forced third build runs all.do again, but a is still up to date.
    assert tree.runs() == ["all", "a", "all"]


def test_build_default_cwd_is_current_directory(tree: Tree) -> None:
    write_logged_all(tree)

    result = python_json(
        tree,
        """
import json, redors
print(json.dumps(redors.build(["all"]).status))
""",
    )

    assert result == 0
    assert tree.read("all") == "from-a\n"


def test_build_relative_cwd(tree: Tree) -> None:
    write_logged_all(tree)
    tree.path("sub").mkdir()

    result = python_json(
        tree,
        """
import json, redors
print(json.dumps([redors.build(["all"], cwd=".").status, redors.build(["../a"], cwd="sub", force=True).status]))
""",
    )

    assert result == [0, 0]
    assert tree.read("all") == "from-a\n"


def test_build_rejects_single_string(tree: Tree) -> None:
    write_logged_all(tree)

    caught = python_json(
        tree,
        """
import json, redors
try:
    redors.build("all")
    print(json.dumps(None))
except TypeError as error:
    print(json.dumps(str(error)))
""",
    )

    assert caught is not None and "single name 'all'" in caught
    assert not tree.exists("all")


# redors.whichdo


def test_whichdo_finds_default_do(tree: Tree) -> None:
    tree.write("default.o.do", "echo $2 > $3\n")
    tree.path("s/t").mkdir(parents=True)
    root = str(tree.root)

    match = python_json(
        tree,
        f"""
import json, redors
match = redors.whichdo("s/t/x.o", {root!r})
found = match.found
print(json.dumps({{"type": type(match).__name__, "found_type": type(found).__name__,
                  "dofile": found.dofile, "arg1": found.arg1, "arg2": found.arg2,
                  "missing": match.missing}}))
""",
    )

    assert match["type"] == "DoMatch"
    assert match["found_type"] == "Candidate"
    assert match["dofile"] == f"{root}/default.o.do"
    assert match["arg1"] == "s/t/x.o"
    assert match["arg2"] == "s/t/x"
    assert match["missing"] == [
        f"{root}/s/t/x.o.do",
        f"{root}/s/t/default.o.do",
        f"{root}/s/t/default.do",
        f"{root}/s/default.o.do",
        f"{root}/s/default.do",
    ]


def test_whichdo_without_do_file(tree: Tree) -> None:
    root = str(tree.root)

    match = python_json(
        tree,
        f"""
import json, redors
match = redors.whichdo("zz", {root!r})
print(json.dumps({{"found": match.found, "missing": match.missing}}))
""",
    )

    assert match["found"] is None
    assert match["missing"][:2] == [f"{root}/zz.do", f"{root}/default.do"]
    assert match["missing"][-1] == "/default.do"


# Listings and errors.


def test_listing_functions_return_absolute_paths(tree: Tree) -> None:
    tree.write("all.do", "redo-ifchange a b\ncat a b > $3\n")
    tree.write("a.do", "redo-ifchange src\ncat src > $3\n")
    tree.write("b.do", "echo b > $3\n")
    tree.write("src", "first\n")
    tree.redo("all")
    tree.touch_later("src", "second\n")
    root = str(tree.root)

    listings = python_json(
        tree,
        f"""
import json, redors
print(json.dumps({{"targets": redors.targets({root!r}), "sources": redors.sources({root!r}),
                  "ood": redors.out_of_date({root!r})}}))
""",
    )

    assert sorted(listings["targets"]) == [f"{root}/a", f"{root}/all", f"{root}/b"]
    assert f"{root}/src" in listings["sources"]
    assert f"{root}/a" not in listings["sources"]
    assert sorted(listings["ood"]) == [f"{root}/a", f"{root}/all"]


def test_damaged_database_raises_state_error(tree: Tree) -> None:
    tree.write("x.do", "echo x > $3\n")
    tree.redo("x")
    for name in ("redors.db", "redors.db-wal"):
        tree.path(f".redo/{name}").write_bytes(b"not a database\n" * 300)
    root = str(tree.root)

    caught = python_json(
        tree,
        f"""
import json, redors
caught = {{}}
for name, call in [("build", lambda: redors.build(["x"], cwd={root!r})),
                   ("targets", lambda: redors.targets({root!r}))]:
    try:
        call()
        caught[name] = None
    except redors.RedoError as error:
        caught[name] = [type(error).__name__, isinstance(error, redors.StateError), str(error)]
print(json.dumps(caught))
""",
    )

    for name in ("build", "targets"):
        assert caught[name] is not None, name
        assert caught[name][0] == "StateError", caught
        assert caught[name][1] is True, caught
        assert "damaged" in caught[name][2], caught


def test_state_error_derives_from_redo_error(tree: Tree) -> None:
    result = python_json(
        tree,
        """
import json, redors
print(json.dumps([issubclass(redors.StateError, redors.RedoError),
                  issubclass(redors.RedoError, Exception)]))
""",
    )

    assert result == [True, True]


def test_version_matches_command_line(tree: Tree) -> None:
    version = python_json(tree, "import json, redors; print(json.dumps(redors.__version__))")
    shown = tree.run("redo", "--version")

    assert isinstance(version, str)
    assert version != ""
    assert shown.returncode == 0, str(shown)
    assert version in shown.stdout, str(shown)


# python -m redors


def test_python_module_runs_redo(tree: Tree) -> None:
    write_logged_all(tree)

    result = tree.run(PYTHON, "-m", "redors", "redo", "all")

    assert result.returncode == 0, str(result)
    assert tree.read("all") == "from-a\n"
    assert tree.runs() == ["all", "a"]
    assert "redo  all" in result.stderr, str(result)
    assert "redo    a" in result.stderr, str(result)


def test_python_module_reports_failure(tree: Tree) -> None:
    tree.write("bad.do", "exit 6\n")

    result = tree.run(PYTHON, "-m", "redors", "redo", "bad")

    assert result.returncode == 1, str(result)
    assert "redo: error: cannot build 'bad': bad.do failed with exit status 6" in result.stderr, str(result)


@pytest.mark.parametrize("args", [[], ["redo-nosuch"]], ids=["no-command", "unknown-command"])
def test_python_module_usage_error(tree: Tree, args: list) -> None:
    result = tree.run(PYTHON, "-m", "redors", *args)

    assert result.returncode == 2, str(result)


# Console scripts called by absolute path inside a .do.


@pytest.mark.parametrize(
    "caller",
    [
        pytest.param(f"{BIN_DIR}/redo-ifchange src", id="console-script"),
        pytest.param(f"{PYTHON} -m redors redo-ifchange src", id="python-module"),
        pytest.param(
            f"{PYTHON} -c 'import sys, redors; sys.exit(redors.build([\"src\"], force=False).status)'",
            id="build-function",
        ),
    ],
)
def test_python_caller_records_dependency(tree: Tree, caller: str) -> None:
    tree.write("src", "first\n")
    tree.write(
        "copy.do",
        f"""
        echo copy >> "$RUNLOG"
        {caller}
        cat src > $3
    """,
    )

    tree.redo("copy")
    assert tree.read("copy") == "first\n"
    assert tree.run("redo-sources").stdout.splitlines().count("src") == 1

    tree.ifchange("copy")
    assert tree.runs() == ["copy"]

    tree.touch_later("src", "second\n")
    assert tree.run("redo-ood").stdout.splitlines() == ["copy"]
    tree.ifchange("copy")
    assert tree.runs() == ["copy", "copy"]
    assert tree.read("copy") == "second\n"


def test_console_script_builds_inside_do(tree: Tree) -> None:
    tree.write("dep.do", 'echo dep >> "$RUNLOG"\necho built-dep > $3\n')
    tree.write(
        "user.do",
        f"""
        {BIN_DIR}/redo-ifchange dep
        cat dep > $3
    """,
    )

    result = tree.redo("user")

    assert tree.read("user") == "built-dep\n"
    assert tree.runs() == ["dep"]
    # A nested engine would print the dependency at depth 0.
    assert "redo    dep" in result.stderr, str(result)


# The environment of a job.

ENV_SCRIPT = """
    python3 -c '
import json, os, stat, sys
engine = os.environ.get("REDORS_ENGINE", "")
first_path = os.environ["PATH"].split(os.pathsep)[0]
ifchange = os.path.join(first_path, "redo-ifchange")
with open(ifchange, "rb") as program:
    magic = program.read(4).hex()
info = {
    "env": {name: value for name, value in os.environ.items() if name.startswith("REDO")},
    "argv1": sys.argv[1],
    "first_path": first_path,
    "ifchange_magic": magic,
    "socket_is_socket": stat.S_ISSOCK(os.stat(engine).st_mode),
    "socket_mode": oct(stat.S_IMODE(os.stat(engine).st_mode)),
    "socket_dir_mode": oct(stat.S_IMODE(os.stat(os.path.dirname(engine)).st_mode)),
}
print(json.dumps(info))
' "$1" > $3
    redo-ifchange "$1.inner"
"""

INNER_SCRIPT = """
    echo "$REDO_DEPTH" > $3
"""


def read_job_info(tree: Tree, name: str) -> Dict[str, Any]:
    return json.loads(tree.read(name))


def test_job_environment_from_top(tree: Tree) -> None:
    tree.write("sub/env.do", ENV_SCRIPT)
    tree.write("sub/env.inner.do", INNER_SCRIPT)
    root = str(tree.root)

    tree.redo("sub/env")

    info = read_job_info(tree, "sub/env")
    env = info["env"]
    assert env["REDO_BASE"] == root
    assert env["REDO_STARTDIR"] == root
    assert env["REDO_PWD"] == "sub"
    assert env["REDO_TARGET"] == "env"
    assert env["REDO_TARGET"] == info["argv1"]
    assert env["REDO_DEPTH"] == "  "
    assert tree.read("sub/env.inner") == "    \n"
    assert int(env["REDO_RUNID"]) >= 0
    assert env["REDORS_JOB"] != ""
    assert os.path.realpath(env["REDORS_PYTHON"]) == os.path.realpath(PYTHON)
    assert env["REDO"] == os.path.join(info["first_path"], "redo")
    assert info["ifchange_magic"] == b"\x7fELF".hex()
    assert info["socket_is_socket"] is True
    assert info["socket_mode"] == "0o600"
    assert info["socket_dir_mode"] == "0o700"


def test_job_environment_from_subdirectory(tree: Tree) -> None:
    tree.path(".git").mkdir()
    tree.write("sub/env.do", ENV_SCRIPT)
    tree.write("sub/env.inner.do", INNER_SCRIPT)
    root = str(tree.root)

    tree.redo("env", cwd=tree.path("sub"))

    env = read_job_info(tree, "sub/env")["env"]
    assert env["REDO_BASE"] == root
    assert env["REDO_STARTDIR"] == f"{root}/sub"
    assert env["REDO_PWD"] == "."
    assert env["REDO_TARGET"] == "env"
    assert env["REDO_DEPTH"] == "  "


def test_run_id_changes_between_runs(tree: Tree) -> None:
    tree.write("sub/env.do", ENV_SCRIPT)
    tree.write("sub/env.inner.do", INNER_SCRIPT)

    tree.redo("sub/env")
    first = read_job_info(tree, "sub/env")["env"]["REDO_RUNID"]
    tree.redo("sub/env")
    second = read_job_info(tree, "sub/env")["env"]["REDO_RUNID"]

    assert int(first) != int(second)


def test_stale_redo_variables_replaced(tree: Tree) -> None:
    tree.write("sub/env.do", ENV_SCRIPT)
    tree.write("sub/env.inner.do", INNER_SCRIPT)
    root = str(tree.root)
    stale = {
        "REDO": "/nonexistent/redo",
        "REDO_BASE": "/nonexistent",
        "REDO_STARTDIR": "/nonexistent",
        "REDO_PWD": "elsewhere",
        "REDO_TARGET": "wrong",
        "REDO_DEPTH": "        ",
        "REDO_RUNID": "not-a-number",
        "REDORS_ENGINE": "/nonexistent/engine.sock",
        "REDORS_PYTHON": "/nonexistent/python",
    }

    tree.redo("sub/env", env=stale)

    env = read_job_info(tree, "sub/env")["env"]
    assert env["REDO_BASE"] == root
    assert env["REDO_STARTDIR"] == root
    assert env["REDO_PWD"] == "sub"
    assert env["REDO_TARGET"] == "env"
    assert env["REDO_DEPTH"] == "  "
    assert tree.read("sub/env.inner") == "    \n"
    assert int(env["REDO_RUNID"]) >= 0
    assert env["REDO"] != stale["REDO"]
    assert env["REDORS_ENGINE"] != stale["REDORS_ENGINE"]
    assert os.path.realpath(env["REDORS_PYTHON"]) == os.path.realpath(PYTHON)


# Installed console scripts.


def test_every_command_installed_beside_python(tree: Tree) -> None:
    names = python_json(tree, "import json; from redors import _native; print(json.dumps(list(_native.COMMANDS)))")

    assert "redo" in names
    assert "redo-ifchange" in names
    for name in names:
        script = Path(BIN_DIR) / name
        assert script.is_file(), f"{name} is not installed in {BIN_DIR}"
        assert os.access(script, os.X_OK), f"{script} is not executable"
