//! The core of redors, a redo build system: the state database, file stamps
//! and hashing, the scheduler, the job runner and the protocol spoken with
//! the inner commands (`redo-ifchange` and its kin) that `.do` scripts call.
//!
//! This crate has no Python in it. The Python front drives it through the
//! `redors._native` extension; the inner commands link it directly.

pub mod constants;
pub mod engine;
pub mod install;
pub mod output;
pub mod paths;
pub mod protocol;
pub mod query;
pub mod report;
pub mod resolve;
pub mod stamp;
pub mod store;
pub mod top;

mod listener;
mod locks;
mod scheduler;
mod signals;
mod spawn;
mod tokens;

pub use engine::{Config, EngineError, RunOutcome, run};
pub use report::{Event, EventKind, Reporter};
pub use resolve::{DoMatch, Resolution, Resolver};
pub use spawn::Background;
