"""The commands that a person types: ``redo``, ``redo-ifchange`` and the rest.

Inside a ``.do`` script the same names run the native inner commands (see
:mod:`redors._entry`); this module serves the top level, where a command
starts a build engine or reads the state database.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

import click

from redors import _native, api
from redors.config import MAX_JOBS, SettingError, Settings
from redors.output import TerminalReporter

__all__ = ["COMMANDS", "main"]

EXIT = _native.EXIT
CONTEXT = {"help_option_names": ["-h", "--help"]}


def _build_options(function: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "-j",
            "--jobs",
            type=click.IntRange(min=1, max=MAX_JOBS),
            default=None,
            metavar="N",
            help="Run up to N .do scripts at once (default: REDORS_JOBS; else make's jobserver when make "
            "started redo; else 1).",
        ),
        click.option("--shuffle", is_flag=True, help="Build the targets of each request in random order."),
        click.option("--debug-locks", is_flag=True, help="Report waits for targets that another redo is building."),
        click.option(
            "-k",
            "--keep-going",
            is_flag=True,
            help="After a failure, still build every target that does not depend on it.",
        ),
        click.option("-x", "--xtrace", is_flag=True, help="Run .do scripts with sh -x (print commands as they run)."),
        click.option(
            "-v", "--verbose", is_flag=True, help="Run .do scripts with sh -v (print lines as they are read)."
        ),
        click.option("-d", "--debug", is_flag=True, help="Explain why each target is rebuilt."),
        click.option(
            "--wait-background",
            is_flag=True,
            default=None,
            help="Wait for processes that a .do script left running before finishing its target "
            "(default: report them and go on; also REDORS_WAIT_BACKGROUND=1).",
        ),
        click.option(
            "--color/--no-color",
            default=None,
            help="Color the output (default: when stderr is a terminal and NO_COLOR is unset).",
        ),
        click.option(
            "--no-log",
            is_flag=True,
            help="Let scripts write to the terminal directly instead of capturing their stderr for redo-log.",
        ),
        click.option(
            "--status/--no-status",
            default=None,
            help="Show a status line at the bottom of the terminal (default: when stderr is a terminal).",
        ),
        click.option(
            "--details/--no-details",
            default=True,
            help="Show what scripts write to stderr (it is stored for redo-log either way).",
        ),
        click.option(
            "--pretty/--no-pretty",
            default=True,
            help="Indent and color the output; --no-pretty prefixes every script line with its target.",
        ),
        click.option("--debug-pids", is_flag=True, help="Show the process id of each script on its build line."),
        click.version_option(_native.VERSION, "-V", "--version", prog_name="redors"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _check_names(command: str, names: Sequence[str]) -> None:
    for name in names:
        if not name:
            raise click.UsageError(f"{command}: invalid empty target name")
        if "\n" in name:
            raise click.UsageError(f"{command}: invalid target name {name!r}: names cannot contain a newline")


def _run_build(command: str, targets: Sequence[str], force: bool, options: Dict[str, Any]) -> None:
    _check_names(command, targets)
    try:
        settings = Settings.from_environment()
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    if options["jobs"] is not None:
        settings.jobs = options["jobs"]
    settings.shuffle = options["shuffle"]
    settings.debug_locks = options["debug_locks"]
    settings.log = not options["no_log"]
    settings.keep_going = options["keep_going"]
    settings.xtrace = options["xtrace"]
    settings.verbose = options["verbose"]
    settings.debug = options["debug"]
    if options["wait_background"] is not None:
        settings.wait_background = options["wait_background"]
    reporter = TerminalReporter(
        color=options["color"],
        command=command,
        status=options["status"],
        details=options["details"],
        pretty=options["pretty"],
        debug_pids=options["debug_pids"],
    )
    try:
        result = api.build(targets, force=force, settings=settings, reporter=reporter)
    except _native.StateError as err:
        reporter.error(str(err))
        sys.exit(EXIT["STATE"])
    except _native.RedoError as err:
        reporter.error(str(err))
        sys.exit(EXIT["FAILED"])
    if result.failed and settings.keep_going:
        reporter.error("these targets failed: " + ", ".join(result.failed))
    sys.exit(result.status)


@click.command("redo", context_settings=CONTEXT)
@_build_options
@click.argument("targets", nargs=-1)
def redo(targets: Sequence[str], **options: Any) -> None:
    """Build TARGETS (default: all), whether or not they are up to date.

    Their dependencies are rebuilt only when they are out of date.
    """
    _run_build("redo", targets or ("all",), True, options)


@click.command("redo-ifchange", context_settings=CONTEXT)
@_build_options
@click.argument("targets", nargs=-1)
def redo_ifchange(targets: Sequence[str], **options: Any) -> None:
    """Bring TARGETS (default: all) up to date: build those that are out of date.

    Inside a .do script it also records that the target being built depends on
    each of them.
    """
    _run_build("redo-ifchange", targets or ("all",), False, options)


def _inside_only(name: str, purpose: str) -> click.Command:
    @click.command(name, context_settings={**CONTEXT, "ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: Sequence[str]) -> None:
        del args
        TerminalReporter(command=name).error(f"{name} {purpose}; it only works inside a .do script while redo runs it")
        sys.exit(EXIT["FAILED"])

    command.help = f"Inside a .do script: {purpose}."
    return command


redo_ifcreate = _inside_only("redo-ifcreate", "records that the target must be rebuilt when the named files appear")
redo_always = _inside_only("redo-always", "marks the target as out of date in every run")
redo_stamp = _inside_only("redo-stamp", "sets the target's stamp from stdin")
redo_flush_cache = _inside_only(
    "redo-flush-cache", "makes the running build check again the targets it has already checked"
)


@click.command("redo-whichdo", context_settings=CONTEXT)
@click.argument("target")
def redo_whichdo(target: str) -> None:
    """Print the .do files that redo looks for to build TARGET, one per line.

    The last line is the one that redo uses; the exit status is 1 when none
    of them exists.
    """
    _check_names("redo-whichdo", [target])
    cwd = os.getcwd()
    match = api.whichdo(target, cwd)
    tried: List[str] = list(match.missing)
    if match.found is not None:
        tried.append(match.found.dofile)
    for path in tried:
        click.echo(os.path.relpath(path, cwd))
    sys.exit(EXIT["OK"] if match.found is not None else EXIT["FAILED"])


def _listing_command(name: str, lister: Callable[[Optional[str]], List[str]], summary: str) -> click.Command:
    @click.command(name, context_settings=CONTEXT)
    def command() -> None:
        cwd = os.getcwd()
        try:
            paths = lister(api.find_top(cwd))
        except _native.StateError as err:
            TerminalReporter(command=name).error(str(err))
            sys.exit(EXIT["STATE"])
        for path in paths:
            click.echo(os.path.relpath(path, cwd))

    command.help = summary
    return command


@click.command("redo-log", context_settings=CONTEXT)
@click.option("-r", "--recursive", is_flag=True, help="Also show the logs of the targets that each script built.")
@click.option(
    "-u", "--unchanged", is_flag=True, help="With -r, also show dependencies that were up to date (their last log)."
)
@click.option("-f", "--follow", is_flag=True, help="For a target being built, show its output as it comes.")
@click.option("--details/--no-details", default=True, help="Show the log text, not only the build lines.")
@click.option("--pretty/--no-pretty", default=True, help="Indent and color; --no-pretty prefixes lines with targets.")
@click.option("--color/--no-color", default=None, help="Color the output (default: on a terminal, unless NO_COLOR).")
@click.argument("targets", nargs=-1, required=True)
def redo_log(targets: Sequence[str], **options: Any) -> None:
    """Show what the scripts of TARGETS wrote to stderr in their last build."""
    from redors.log import LogOptions, replay

    _check_names("redo-log", targets)
    cwd = os.getcwd()
    reporter = TerminalReporter(command="redo-log")
    settings = LogOptions(
        recursive=options["recursive"],
        unchanged=options["unchanged"],
        follow=options["follow"],
        details=options["details"],
        pretty=options["pretty"],
        color=options["color"],
    )
    try:
        status = replay(list(targets), api.find_top(cwd, targets), cwd, settings, reporter.error)
    except _native.StateError as err:
        reporter.error(str(err))
        sys.exit(EXIT["STATE"])
    sys.exit(status)


redo_targets = _listing_command("redo-targets", api.targets, "List every target that redo has built in this tree.")
redo_sources = _listing_command("redo-sources", api.sources, "List every source file that redo has seen in this tree.")
redo_ood = _listing_command("redo-ood", api.out_of_date, "List the targets that the next build would rebuild.")

COMMANDS: Dict[str, click.Command] = {
    "redo": redo,
    "redo-ifchange": redo_ifchange,
    "redo-ifcreate": redo_ifcreate,
    "redo-always": redo_always,
    "redo-stamp": redo_stamp,
    "redo-whichdo": redo_whichdo,
    "redo-flush-cache": redo_flush_cache,
    "redo-log": redo_log,
    "redo-ood": redo_ood,
    "redo-targets": redo_targets,
    "redo-sources": redo_sources,
}


def main(name: str, args: Sequence[str]) -> None:
    """Run the command ``name`` with ``args`` and exit."""
    # File names are bytes: one that is not UTF-8 prints as it is, like ls
    # prints it, instead of failing or printing escapes.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="surrogateescape")
    command = COMMANDS.get(name)
    if command is None:
        click.echo(f"redors: error: unknown command {name!r}; expected one of: {', '.join(COMMANDS)}", err=True)
        sys.exit(EXIT["USAGE"])
    try:
        command.main(args=list(args), prog_name=name)
    except SettingError as err:
        click.echo(f"{name}: error: {err}", err=True)
        sys.exit(EXIT["USAGE"])
