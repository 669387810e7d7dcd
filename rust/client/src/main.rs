//! The inner commands of redors: `redo-ifchange`, `redo-ifcreate`,
//! `redo-always`, `redo-stamp`, `redo`, `redo-whichdo`, `redo-flush-cache`,
//! `redo-targets`, `redo-sources` and `redo-ood`, as `.do` scripts call them.
//!
//! One program runs under every name and reads its command from `argv[0]`. Inside a build
//! it sends its request to the engine that runs the calling job, whose socket
//! and job id are in the environment, and exits with the engine's answer; no
//! Python starts. Outside a build it hands over to the Python front.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use redors_core::constants::{COMMANDS, env, exit};
use redors_core::paths;
use redors_core::protocol::{self, Command, Request};
use redors_core::query;
use redors_core::stamp::hash_bytes;

const SELF_NAME: &str = "redors-client";

fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    let invoked = argv.next().unwrap_or_default();
    let mut args: Vec<OsString> = argv.collect();
    let mut name = Path::new(&invoked).file_name().unwrap_or_default().to_string_lossy().into_owned();
    if name == SELF_NAME {
        if args.is_empty() {
            eprintln!("{SELF_NAME}: usage: {SELF_NAME} COMMAND [ARGS...] (one of: {})", COMMANDS.join(", "));
            return ExitCode::from(exit::USAGE as u8);
        }
        name = args.remove(0).to_string_lossy().into_owned();
    }
    let status = run(&name, args);
    ExitCode::from(u8::try_from(status).unwrap_or(exit::FAILED as u8))
}

fn run(name: &str, args: Vec<OsString>) -> i32 {
    if !COMMANDS.contains(&name) {
        eprintln!("{SELF_NAME}: error: unknown command '{name}'; expected one of: {}", COMMANDS.join(", "));
        return exit::USAGE;
    }
    let engine = std::env::var_os(env::ENGINE).filter(|value| !value.is_empty());
    let job = std::env::var(env::JOB).ok().and_then(|value| value.parse::<u64>().ok());
    let (Some(engine), Some(job)) = (engine, job) else {
        return hand_to_python(name, args);
    };
    match name {
        // Read-only and rich in options: the Python front serves it.
        "redo-log" => return hand_to_python(name, args),
        // Needs the .do search, which the Python front holds.
        "redo-ood" => return hand_to_python(name, args),
        "redo-targets" | "redo-sources" => return query_state(name, &args),
        _ => {}
    }
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(err) => {
            eprintln!("{name}: error: cannot read the current directory: {err}");
            return exit::FAILED;
        }
    };
    let original_args = args.clone();
    let request = match build_request(name, args, job, cwd) {
        Ok(request) => request,
        Err(status) => return status,
    };
    match protocol::call(Path::new(&engine), &request) {
        Ok(reply) => {
            let _ = std::io::stdout().write_all(&reply.stdout);
            let _ = std::io::stderr().write_all(&reply.stderr);
            reply.status
        }
        // The build that set these variables is over (a process it started
        // outlived it): this call starts a build of its own.
        Err(err) if matches!(err.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            eprintln!("{name}: warning: the build that started this process has ended; starting a new one");
            hand_to_python(name, original_args)
        }
        Err(err) => {
            eprintln!("{name}: error: cannot reach the build engine at '{}': {err}", Path::new(&engine).display());
            exit::FAILED
        }
    }
}

/// Turns the command line into a request, or prints a usage error.
fn build_request(name: &str, args: Vec<OsString>, job: u64, cwd: PathBuf) -> Result<Request, i32> {
    let usage = |message: &str| {
        eprintln!("{name}: error: {message}");
        Err(exit::USAGE)
    };
    let (command, args) = match name {
        "redo" => (Command::Redo, targets(name, args)?),
        "redo-ifchange" => (Command::Ifchange, targets(name, args)?),
        "redo-ifcreate" => (Command::Ifcreate, targets(name, args)?),
        "redo-always" | "redo-flush-cache" => {
            if !args.is_empty() {
                return usage("takes no arguments");
            }
            let command = if name == "redo-always" { Command::Always } else { Command::FlushCache };
            (command, Vec::new())
        }
        "redo-stamp" => {
            if !args.is_empty() {
                return usage("takes no arguments; it reads the stamp data from stdin");
            }
            let mut data = Vec::new();
            if let Err(err) = std::io::stdin().read_to_end(&mut data) {
                eprintln!("{name}: error: cannot read stdin: {err}");
                return Err(exit::FAILED);
            }
            (Command::Stamp, vec![OsStr::from_bytes(&hash_bytes(&data)).to_os_string()])
        }
        "redo-whichdo" => {
            let args = targets(name, args)?;
            if args.len() != 1 {
                return usage("expected exactly one target");
            }
            (Command::Whichdo, args)
        }
        _ => return usage("this command is not available inside a .do script"),
    };
    Ok(Request { command, job, cwd, args })
}

/// Collects target names: every argument, with `--` ending options. Options
/// are refused because inside a build the run's own options apply.
fn targets(name: &str, args: Vec<OsString>) -> Result<Vec<OsString>, i32> {
    let mut targets = Vec::with_capacity(args.len());
    let mut options_done = false;
    for arg in args {
        let bytes = arg.as_bytes();
        if !options_done && bytes == b"--" {
            options_done = true;
        } else if !options_done && bytes.len() > 1 && bytes[0] == b'-' {
            eprintln!(
                "{name}: error: invalid option '{}': inside a .do script the options of the running \
                 build apply (use -- before a target whose name starts with '-')",
                arg.to_string_lossy()
            );
            return Err(exit::USAGE);
        } else if bytes.is_empty() {
            eprintln!("{name}: error: invalid empty target name");
            return Err(exit::USAGE);
        } else if bytes.contains(&b'\n') {
            // The listings and the logs print one name per line.
            eprintln!("{name}: error: invalid target name {:?}: names cannot contain a newline", arg);
            return Err(exit::USAGE);
        } else {
            targets.push(arg);
        }
    }
    Ok(targets)
}

/// Runs `redo-targets` and `redo-sources` on the database.
fn query_state(name: &str, args: &[OsString]) -> i32 {
    if !args.is_empty() {
        eprintln!("{name}: error: takes no arguments");
        return exit::USAGE;
    }
    let Some(top) = std::env::var_os("REDO_BASE").map(PathBuf::from) else {
        eprintln!("{name}: error: REDO_BASE is not set");
        return exit::FAILED;
    };
    let files = match query::list(&top, name == "redo-targets") {
        Ok(files) => files,
        Err(err) => {
            eprintln!("{name}: error: {err}");
            return exit::STATE;
        }
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| top.clone());
    let mut out = Vec::new();
    for file in files {
        out.extend_from_slice(paths::relative(&file, &cwd).as_os_str().as_bytes());
        out.push(b'\n');
    }
    match std::io::stdout().write_all(&out) {
        Ok(()) => exit::OK,
        Err(_) => exit::FAILED,
    }
}

/// Runs the command through the Python front, which starts an engine.
fn hand_to_python(name: &str, args: Vec<OsString>) -> i32 {
    let Some(python) = std::env::var_os(env::PYTHON).filter(|value| !value.is_empty()) else {
        eprintln!(
            "{name}: error: no redo build is running here, and {} does not name the Python of \
             redors; run the command that pip installed instead",
            env::PYTHON
        );
        return exit::FAILED;
    };
    let mut command = std::process::Command::new(&python);
    command.args(["-m", "redors", name]).args(args);
    for stale in [env::ENGINE, env::JOB] {
        command.env_remove(stale);
    }
    let err = command.exec();
    eprintln!("{name}: error: cannot run '{}': {err}", Path::new(&python).display());
    exit::FAILED
}
