//! Events that the engine reports while it runs.
//!
//! The engine prints nothing itself: it hands each event to a [`Reporter`],
//! which the Python front implements to draw the terminal output.

use std::path::PathBuf;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A job starts building `target`.
    Build = 0,
    /// Something looks wrong but the build goes on.
    Warning = 1,
    /// `target` failed; `message` gives the reason.
    Error = 2,
    /// Reason `target` is rebuilt (shown with `-d`).
    Explain = 3,
    /// A job's processes were still running after its script exited.
    Background = 4,
    /// A target waits for, or got, the lock that another run held (shown
    /// with `--debug-locks`).
    Lock = 5,
    /// One line that a script wrote to stderr. `count` is the number of
    /// scripts running at that moment: above 1, the line needs its target.
    Output = 6,
    /// A job ended; `count` is 0 when its target was built.
    Done = 7,
    /// Time passed: for a status line; `count` is the number of targets
    /// that wait for a job token.
    Tick = 8,
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The target concerned, relative to the directory the run started in.
    pub target: PathBuf,
    /// Nesting depth of the target in the run (0 for requested targets).
    pub depth: usize,
    /// Human-readable detail; empty for [`EventKind::Build`].
    pub message: String,
    /// A number whose meaning depends on the kind: the process id of the
    /// job for [`EventKind::Build`], otherwise as each kind documents.
    pub count: u64,
}

/// Receives the engine's events.
pub trait Reporter {
    /// Handles one event.
    fn report(&self, event: &Event);
}

/// A reporter that keeps every event, for tests and embedding.
#[derive(Default)]
pub struct Recorder {
    events: std::sync::Mutex<Vec<Event>>,
}

impl Recorder {
    /// Returns the events reported so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|events| events.clone()).unwrap_or_default()
    }
}

impl Reporter for Recorder {
    fn report(&self, event: &Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event.clone());
        }
    }
}
