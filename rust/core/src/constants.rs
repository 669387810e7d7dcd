//! Facts shared by the engine, the inner commands and the Python front.
//!
//! Python reads these through `redors._native` instead of repeating them, and a
//! test checks that both sides agree.

/// The redors version, from the workspace manifest.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Version of the wire format spoken between inner commands and the engine.
pub const PROTOCOL_VERSION: u16 = 1;

/// Version of the state database schema (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i32 = 2;

/// Directory at the top of the tree that contains the state database.
pub const STATE_DIR: &str = ".redo";

/// File name of the state database inside [`STATE_DIR`].
pub const DB_FILE: &str = "redors.db";

/// Process exit statuses of every redors command.
pub mod exit {
    /// Everything requested is up to date.
    pub const OK: i32 = 0;
    /// A target failed to build, or a command was used wrongly inside a build.
    pub const FAILED: i32 = 1;
    /// Invalid command-line usage.
    pub const USAGE: i32 = 2;
    /// The state database is damaged, too new, or cannot be written.
    pub const STATE: i32 = 3;
    /// Base of the statuses for a run stopped by a signal: 128 + signal number.
    pub const SIGNAL_BASE: i32 = 128;
    /// The run was stopped by SIGINT (Ctrl-C).
    pub const INTERRUPTED: i32 = SIGNAL_BASE + 2;
    /// The run was stopped by SIGTERM.
    pub const TERMINATED: i32 = SIGNAL_BASE + 15;
}

/// Every command that redors installs. The inner-command program runs under
/// each of these names.
pub const COMMANDS: &[&str] = &[
    "redo",
    "redo-ifchange",
    "redo-ifcreate",
    "redo-always",
    "redo-stamp",
    "redo-whichdo",
    "redo-flush-cache",
    "redo-log",
    "redo-ood",
    "redo-targets",
    "redo-sources",
];

/// Environment variables that redors sets for jobs or reads.
pub mod env {
    /// Path of the engine's socket; set only inside a running build.
    pub const ENGINE: &str = "REDORS_ENGINE";
    /// Identity of the job that runs the current `.do` script.
    pub const JOB: &str = "REDORS_JOB";
    /// Python interpreter that runs the redors front, for commands that need it.
    pub const PYTHON: &str = "REDORS_PYTHON";
    /// Overrides the directory into which the inner commands are unpacked.
    pub const CACHE_DIR: &str = "REDORS_CACHE_DIR";
    /// Names the top of the tree explicitly instead of searching for it.
    pub const TOP: &str = "REDORS_TOP";
    /// How many scripts run at once when `-j` is not given.
    pub const JOBS: &str = "REDORS_JOBS";
    /// Set to `1` to wait for a job's background processes before finishing it.
    pub const WAIT_BACKGROUND: &str = "REDORS_WAIT_BACKGROUND";
    /// Set to `1` to wait for job exit with SIGCHLD instead of pidfds (testing aid).
    pub const NO_PIDFD: &str = "REDORS_NO_PIDFD";
}
