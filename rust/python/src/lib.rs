//! `redors._native`: the redors core as seen from Python.
//!
//! This crate only converts values and maps errors; the logic lives in
//! `redors-core`. The engine runs with the GIL released and calls back into
//! Python for the `.do` search and for terminal output.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use redors_core::constants::{self, env, exit};
use redors_core::engine::{self, Config, RunOutcome};
use redors_core::report::{Event, EventKind, Reporter};
use redors_core::resolve::{DoMatch, Resolution, Resolver};
use redors_core::store::StoreError;
use redors_core::{install, query, top};

create_exception!(_native, RedoError, PyException, "Base class of the errors raised by redors.");
create_exception!(_native, StateError, RedoError, "The state database is damaged, too new, or cannot be written.");
create_exception!(
    _native,
    EngineError,
    RedoError,
    "The build engine could not set itself up or stopped making progress."
);

/// The inner-command program, built by `build.rs`.
static CLIENT_PROGRAM: &[u8] = include_bytes!(env!("REDORS_CLIENT_PATH"));
const CLIENT_HASH: &str = env!("REDORS_CLIENT_HASH");

/// Calls a Python function to search `.do` files.
struct PyResolver(Py<PyAny>);

impl Resolver for PyResolver {
    fn resolve(&self, target: &Path) -> Result<Resolution, String> {
        Python::attach(|py| {
            let found = self.0.call1(py, (target.as_os_str(),)).map_err(|err| err.to_string())?;
            let (dofile, arg1, arg2, missing): (Option<PathBuf>, OsString, OsString, Vec<PathBuf>) =
                found.extract(py).map_err(|err| format!("the .do resolver returned an invalid value: {err}"))?;
            Ok(Resolution { found: dofile.map(|dofile| DoMatch { dofile, arg1, arg2 }), missing })
        })
    }
}

/// Calls a Python function for each engine event.
struct PyReporter(Py<PyAny>);

impl Reporter for PyReporter {
    fn report(&self, event: &Event) {
        Python::attach(|py| {
            let args = (event.kind as i32, event.target.as_os_str(), event.depth, &event.message, event.count);
            if let Err(err) = self.0.call1(py, args) {
                err.write_unraisable(py, None);
            }
        });
    }
}

fn state_error(err: StoreError) -> PyErr {
    StateError::new_err(err.to_string())
}

/// Converts paths for Python, which gets them as `str` (undecodable bytes
/// become surrogate escapes, as in `os.fsdecode`).
fn strings(paths: Vec<PathBuf>) -> Vec<OsString> {
    paths.into_iter().map(PathBuf::into_os_string).collect()
}

/// Runs a build and returns `(exit status, failed targets)`.
#[pyfunction]
#[pyo3(signature = (
    *, top, startdir, targets, force, resolver, reporter, command, env,
    client_dir=None, python=None, jobs=None, keep_going=false, xtrace=false, verbose=false,
    debug=false, wait_background=false, use_pidfd=true, debug_locks=false, shuffle=false,
    log=true, status_interval_ms=0,
))]
#[allow(clippy::too_many_arguments)] // Mirrors the keyword-only Python signature.
fn run(
    py: Python<'_>,
    top: PathBuf,
    startdir: PathBuf,
    targets: Vec<PathBuf>,
    force: bool,
    resolver: Py<PyAny>,
    reporter: Py<PyAny>,
    command: String,
    env: Vec<(OsString, OsString)>,
    client_dir: Option<PathBuf>,
    python: Option<OsString>,
    jobs: Option<usize>,
    keep_going: bool,
    xtrace: bool,
    verbose: bool,
    debug: bool,
    wait_background: bool,
    use_pidfd: bool,
    debug_locks: bool,
    shuffle: bool,
    log: bool,
    status_interval_ms: u64,
) -> PyResult<(i32, Vec<OsString>)> {
    let config = Config {
        top,
        startdir,
        command,
        client_dir,
        python,
        env,
        jobs,
        keep_going,
        xtrace,
        verbose,
        debug,
        wait_background,
        use_pidfd,
        debug_locks,
        shuffle,
        log,
        status_interval_ms,
    };
    let resolver = PyResolver(resolver);
    let reporter = PyReporter(reporter);
    let result = py.detach(|| redors_core::engine::run(&config, &targets, force, &resolver, &reporter));
    match result {
        Ok(RunOutcome::Failed(failed)) => Ok((exit::FAILED, strings(failed))),
        Ok(outcome) => Ok((outcome.exit_status(), Vec::new())),
        Err(engine::EngineError::State(err)) => Err(state_error(err)),
        Err(err) => Err(EngineError::new_err(err.to_string())),
    }
}

/// Finds the top of the tree for a request of `targets` made in `cwd`:
/// `explicit` (relative to `cwd`) when given, else a search upwards that
/// never climbs into `home`.
#[pyfunction]
#[pyo3(signature = (cwd, targets, explicit=None, home=None))]
fn find_top(cwd: PathBuf, targets: Vec<PathBuf>, explicit: Option<PathBuf>, home: Option<PathBuf>) -> OsString {
    top::top_for_request(&cwd, &targets, explicit.as_deref(), home.as_deref()).into_os_string()
}

/// Tells whether `targets` (relative to `cwd`) are certainly up to date in
/// the tree at `top`, reading the database only.
#[pyfunction]
fn up_to_date(py: Python<'_>, top: PathBuf, cwd: PathBuf, targets: Vec<PathBuf>) -> PyResult<bool> {
    py.detach(|| query::up_to_date(&top, &cwd, &targets)).map_err(state_error)
}

/// Lists the targets (or the sources) recorded in the tree at `top`.
#[pyfunction]
fn list_files(top: PathBuf, targets: bool) -> PyResult<Vec<OsString>> {
    query::list(&top, targets).map(strings).map_err(state_error)
}

/// Lists the targets of the tree at `top` that the next run would rebuild;
/// `resolver` finds `.do` files, as for [`run`].
#[pyfunction]
fn out_of_date(top: PathBuf, resolver: Py<PyAny>) -> PyResult<Vec<OsString>> {
    query::out_of_date(&top, &PyResolver(resolver)).map(strings).map_err(state_error)
}

/// Returns what `redo-log` needs of a target, by key:
/// `(is_target, building, built_run, log, deps)` where `log` is
/// `(run, content, [(offset, child key)], live path)` or None.
/// A stored log as Python gets it: `(run, content, [(offset, child key)], live path)`.
type PyLog = (i64, Py<PyBytes>, Vec<(u64, OsString)>, Option<OsString>);

#[pyfunction]
#[allow(clippy::type_complexity)] // The tuple is the Python-facing shape.
fn target_log(
    py: Python<'_>,
    top: PathBuf,
    key: PathBuf,
) -> PyResult<Option<(bool, bool, i64, Option<PyLog>, Vec<OsString>)>> {
    let Some(found) = query::target_log(&top, &key).map_err(state_error)? else { return Ok(None) };
    let log = found.log.map(|log| {
        let children = log.children.into_iter().map(|(offset, key)| (offset, key.into_os_string())).collect();
        (log.run, PyBytes::new(py, &log.content).unbind(), children, log.live.map(PathBuf::into_os_string))
    });
    Ok(Some((found.is_target, found.building, found.built_run, log, strings(found.deps))))
}

/// Unpacks the inner commands under `root` (once) and returns their directory.
#[pyfunction]
fn install_client(root: PathBuf) -> PyResult<OsString> {
    install::install_client(&root, CLIENT_PROGRAM, CLIENT_HASH).map(PathBuf::into_os_string).map_err(|err| {
        PyOSError::new_err(format!("cannot unpack the redors inner commands into '{}': {err}", root.display()))
    })
}

fn add_constants(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add("VERSION", constants::VERSION)?;
    module.add("PROTOCOL_VERSION", constants::PROTOCOL_VERSION)?;
    module.add("SCHEMA_VERSION", constants::SCHEMA_VERSION)?;
    module.add("STATE_DIR", constants::STATE_DIR)?;
    module.add("DB_FILE", constants::DB_FILE)?;
    module.add("COMMANDS", constants::COMMANDS.to_vec())?;
    module.add("CLIENT_HASH", CLIENT_HASH)?;

    let exits = PyDict::new(py);
    for (name, value) in [
        ("OK", exit::OK),
        ("FAILED", exit::FAILED),
        ("USAGE", exit::USAGE),
        ("STATE", exit::STATE),
        ("SIGNAL_BASE", exit::SIGNAL_BASE),
        ("INTERRUPTED", exit::INTERRUPTED),
        ("TERMINATED", exit::TERMINATED),
    ] {
        exits.set_item(name, value)?;
    }
    module.add("EXIT", exits)?;

    let variables = PyDict::new(py);
    for (name, value) in [
        ("ENGINE", env::ENGINE),
        ("JOB", env::JOB),
        ("PYTHON", env::PYTHON),
        ("CACHE_DIR", env::CACHE_DIR),
        ("TOP", env::TOP),
        ("JOBS", env::JOBS),
        ("WAIT_BACKGROUND", env::WAIT_BACKGROUND),
        ("NO_PIDFD", env::NO_PIDFD),
    ] {
        variables.set_item(name, value)?;
    }
    module.add("ENV", variables)?;

    let kinds = PyDict::new(py);
    for kind in [
        EventKind::Build,
        EventKind::Warning,
        EventKind::Error,
        EventKind::Explain,
        EventKind::Background,
        EventKind::Lock,
        EventKind::Output,
        EventKind::Done,
        EventKind::Tick,
    ] {
        kinds.set_item(format!("{kind:?}").to_uppercase(), kind as i32)?;
    }
    module.add("EVENT_KINDS", kinds)?;
    Ok(())
}

/// Defines the `redors._native` module: the engine and its constants.
#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    add_constants(module)?;
    module.add("RedoError", py.get_type::<RedoError>())?;
    module.add("StateError", py.get_type::<StateError>())?;
    module.add("EngineError", py.get_type::<EngineError>())?;
    module.add_function(wrap_pyfunction!(run, module)?)?;
    module.add_function(wrap_pyfunction!(find_top, module)?)?;
    module.add_function(wrap_pyfunction!(up_to_date, module)?)?;
    module.add_function(wrap_pyfunction!(list_files, module)?)?;
    module.add_function(wrap_pyfunction!(out_of_date, module)?)?;
    module.add_function(wrap_pyfunction!(install_client, module)?)?;
    module.add_function(wrap_pyfunction!(target_log, module)?)?;
    Ok(())
}
