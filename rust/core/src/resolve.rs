//! The interface through which the engine finds the `.do` file of a target.
//!
//! The search rules live in the Python front (`redors.dofiles`); the engine
//! calls them through this trait, and tests supply their own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The `.do` file chosen for a target, with the arguments it is run with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoMatch {
    /// Absolute path of the `.do` file; the job runs in its directory.
    pub dofile: PathBuf,
    /// `$1`: the target's path relative to the `.do` file's directory.
    pub arg1: OsString,
    /// `$2`: `$1` without the extension that a `default.EXT.do` matched.
    pub arg2: OsString,
}

impl DoMatch {
    /// Directory in which the job runs.
    pub fn dir(&self) -> &Path {
        self.dofile.parent().unwrap_or_else(|| Path::new("/"))
    }
}

/// The outcome of a `.do` search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// The first `.do` file that exists, if any.
    pub found: Option<DoMatch>,
    /// Absolute paths of the candidates tried before it, none of which exist.
    /// The target depends on each of them not appearing.
    pub missing: Vec<PathBuf>,
}

/// Finds `.do` files.
pub trait Resolver {
    /// Searches the `.do` file for the absolute target path `target`.
    fn resolve(&self, target: &Path) -> Result<Resolution, String>;
}
