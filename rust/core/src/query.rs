//! Read-only questions about a tree's state: which files are targets, which
//! are sources, which targets are out of date. They read the database
//! without starting a build, so they also work while a build runs.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::constants::SCHEMA_VERSION;
use crate::paths;
use crate::resolve::{Resolution, Resolver};
use crate::stamp::{FileKind, Stamp, content_hash, now_ns, target_hash};
use crate::store::{DepKind, DepRecord, FileRecord, LogRecord, Store, StoreError, flags};

/// Lists the absolute paths of every target (`targets`) or every source.
pub fn list(top: &Path, targets: bool) -> Result<Vec<PathBuf>, StoreError> {
    let Some(store) = Store::open_read_only(top)? else {
        return Ok(Vec::new());
    };
    let keys = store.keys(targets)?;
    Ok(keys.iter().map(|key| paths::from_key(top, key)).collect())
}

/// Lists the absolute paths of the targets that the next run would rebuild.
/// `resolver` finds their `.do` files: a target that none builds any more
/// becomes a source when its file exists, as in a run.
pub fn out_of_date(top: &Path, resolver: &dyn Resolver) -> Result<Vec<PathBuf>, StoreError> {
    let Some(store) = Store::open_read_only(top)? else {
        return Ok(Vec::new());
    };
    store.snapshot(|store| {
        let mut checker = Checker { store, top, resolver, verdicts: HashMap::new() };
        let mut found = Vec::new();
        for key in store.keys(true)? {
            if checker.is_out_of_date(&key)? {
                found.push(paths::from_key(top, &key));
            }
        }
        Ok(found)
    })
}

/// Tells whether `targets` (relative to `cwd`) are certainly up to date,
/// so that a top-level `redo-ifchange` of them has nothing to do and nothing
/// to say. It answers false whenever a run would build, warn, or record
/// anything: a missing or older database, a file with no record, a stamp
/// that differs from its record or is too recent to trust, a flagged target.
/// Only the run itself decides those cases.
pub fn up_to_date(top: &Path, cwd: &Path, targets: &[PathBuf]) -> Result<bool, StoreError> {
    let Some(store) = Store::open_read_only(top)? else {
        return Ok(false);
    };
    if store.user_version()? != SCHEMA_VERSION {
        return Ok(false);
    }
    let (clean, settled) = store.snapshot(|store| {
        let mut walk = CleanWalk {
            store,
            top,
            clean: HashMap::new(),
            on_stack: HashSet::new(),
            now: now_ns(),
            settled: Vec::new(),
        };
        for target in targets {
            let key = paths::key(top, &paths::absolute(cwd, target));
            if !walk.is_clean(key)? {
                return Ok((false, Vec::new()));
            }
        }
        Ok((true, walk.settled))
    })?;
    if !settled.is_empty() {
        refresh_seen(top, &settled);
    }
    Ok(clean)
}

/// How long [`refresh_seen`] waits for another run's write.
const REFRESH_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

/// Records, for files whose content hash just proved that they did not
/// change, that their stamps are now old enough to be trusted alone, so
/// that the next check need not hash them again. It is an optimization
/// only: when the database is busy or read-only, nothing is written.
fn refresh_seen(top: &Path, settled: &[(i64, Stamp)]) {
    let Ok(Some(mut store)) = Store::open_existing(top) else { return };
    // A run that writes meanwhile has the database for a moment only; a
    // check that would have to wait longer skips the refresh.
    if store.set_busy_timeout(REFRESH_BUSY_TIMEOUT).is_err() {
        return;
    }
    let seen_ns = now_ns();
    let _ = store.write(|writer| {
        for (id, stamp) in settled {
            writer.refresh_seen(*id, stamp, seen_ns)?;
        }
        Ok(())
    });
}

/// The depth-first walk of [`up_to_date`], without recursion so that long
/// dependency chains cannot overflow the stack.
struct CleanWalk<'a> {
    store: &'a Store,
    top: &'a Path,
    /// Files found clean (for a target, with everything it depends on), with
    /// their generation, which each dependent compares with its own record.
    clean: HashMap<PathBuf, i64>,
    /// Targets whose dependencies are being walked.
    on_stack: HashSet<PathBuf>,
    /// When the walk started, in nanoseconds since the epoch.
    now: i64,
    /// Files whose stamp was too recent to trust when recorded, and whose
    /// hash showed them unchanged now that the stamp is old enough.
    settled: Vec<(i64, Stamp)>,
}

/// A target whose dependencies [`CleanWalk`] is walking.
struct Walking {
    key: PathBuf,
    generation: i64,
    deps: Vec<DepRecord>,
    next: usize,
}

impl CleanWalk<'_> {
    fn is_clean(&mut self, key: PathBuf) -> Result<bool, StoreError> {
        if self.clean.contains_key(&key) {
            return Ok(true);
        }
        let mut stack = Vec::new();
        match self.enter(key)? {
            Entered::Clean(_) => return Ok(true),
            Entered::Dirty => return Ok(false),
            Entered::Walk(frame) => stack.push(frame),
        }
        while let Some(frame) = stack.last_mut() {
            let Some(dep) = frame.deps.get(frame.next) else {
                let done = stack.pop().expect("frame");
                self.on_stack.remove(&done.key);
                self.clean.insert(done.key, done.generation);
                continue;
            };
            frame.next += 1;
            if dep.kind == DepKind::IfCreate {
                match Stamp::read(&paths::from_key(self.top, &dep.key)) {
                    Ok(stamp) if !stamp.exists() => continue,
                    _ => return Ok(false),
                }
            }
            if self.on_stack.contains(&dep.key) {
                return Ok(false);
            }
            let wanted = dep.generation;
            let generation = match self.clean.get(&dep.key) {
                Some(&generation) => generation,
                None => match self.enter(dep.key.clone())? {
                    Entered::Clean(generation) => generation,
                    Entered::Dirty => return Ok(false),
                    Entered::Walk(child) if child.generation == wanted => {
                        stack.push(child);
                        continue;
                    }
                    Entered::Walk(child) => child.generation,
                },
            };
            if generation != wanted {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Looks at one file's own record and stamp.
    fn enter(&mut self, key: PathBuf) -> Result<Entered, StoreError> {
        let Some(record) = self.store.file(&key)? else {
            return Ok(Entered::Dirty);
        };
        let abs = paths::from_key(self.top, &key);
        if !record.is_target {
            let clean = match Stamp::read(&abs) {
                Ok(stamp) if stamp.exists() => self.unchanged(&abs, &record, &stamp, content_hash),
                _ => false,
            };
            if !clean {
                return Ok(Entered::Dirty);
            }
            self.clean.insert(key, record.generation);
            return Ok(Entered::Clean(record.generation));
        }
        if record.flags != 0 {
            return Ok(Entered::Dirty);
        }
        let Ok(stamp) = Stamp::read_target(&abs) else {
            return Ok(Entered::Dirty);
        };
        let same_file = match (record.stamp.exists(), stamp.exists()) {
            (false, false) => true,
            (true, true) if record.stamp.kind == FileKind::Dir => stamp.kind == FileKind::Dir,
            (true, true) => self.unchanged(&abs, &record, &stamp, target_hash),
            _ => false,
        };
        if !same_file {
            return Ok(Entered::Dirty);
        }
        let deps = match record.id {
            Some(id) => self.store.deps(id)?,
            None => Vec::new(),
        };
        self.on_stack.insert(key.clone());
        Ok(Entered::Walk(Walking { key, generation: record.generation, deps, next: 0 }))
    }
}

impl CleanWalk<'_> {
    /// Tells whether a file is certainly as its record describes it (see
    /// [`unchanged`]), and notes the files whose hash had to decide.
    fn unchanged(&mut self, abs: &Path, record: &FileRecord, stamp: &Stamp, hash: HashFn) -> bool {
        if !unchanged(abs, record, stamp, hash) {
            return false;
        }
        if stamp.is_racy(record.seen_ns) && !stamp.is_racy(self.now) {
            if let Some(id) = record.id {
                self.settled.push((id, *stamp));
            }
        }
        true
    }
}

enum Entered {
    /// A clean source, with its generation.
    Clean(i64),
    Dirty,
    Walk(Walking),
}

/// Tells whether a file is certainly as its record describes it: same
/// stamp, and, when the stamp was taken too soon after the file changed to
/// be trusted, same content hash (computed by `hash`).
fn unchanged(abs: &Path, record: &FileRecord, stamp: &Stamp, hash: HashFn) -> bool {
    if record.stamp != *stamp {
        return false;
    }
    !stamp.is_racy(record.seen_ns) || matches!(hash(abs, stamp), Ok(found) if found == record.hash)
}

type HashFn = fn(&Path, &Stamp) -> std::io::Result<Option<crate::stamp::Hash>>;

struct Checker<'a> {
    store: &'a Store,
    top: &'a Path,
    resolver: &'a dyn Resolver,
    /// Targets already decided: true when out of date.
    verdicts: HashMap<PathBuf, bool>,
}

/// A target whose dependencies are being walked.
struct Frame {
    key: PathBuf,
    deps: Vec<DepRecord>,
    next: usize,
}

impl Checker<'_> {
    /// Decides whether a target is out of date, walking its dependency
    /// targets depth first without recursion. A dependency cycle counts as
    /// up to date here; the build reports it.
    fn is_out_of_date(&mut self, key: &Path) -> Result<bool, StoreError> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut on_stack: HashSet<PathBuf> = HashSet::new();
        match self.open(key)? {
            Ok(frame) => {
                on_stack.insert(frame.key.clone());
                stack.push(frame);
            }
            Err(verdict) => return Ok(verdict),
        }
        while let Some(frame) = stack.last_mut() {
            let Some(dep) = frame.deps.get(frame.next).cloned() else {
                let done = stack.pop().expect("frame");
                on_stack.remove(&done.key);
                self.verdicts.insert(done.key, false);
                continue;
            };
            let verdict = match self.dep_changed(&dep)? {
                DepState::Changed => Some(true),
                DepState::Unchanged => None,
                DepState::Target(record) => match self.verdicts.get(&dep.key) {
                    Some(true) => Some(true),
                    Some(false) => (record.generation != dep.generation).then_some(true),
                    None if on_stack.contains(&dep.key) => None,
                    None => match self.open(&dep.key)? {
                        Ok(child) => {
                            on_stack.insert(child.key.clone());
                            stack.push(child);
                            continue;
                        }
                        Err(true) => Some(true),
                        Err(false) => (record.generation != dep.generation).then_some(true),
                    },
                },
            };
            let frame = stack.last_mut().expect("frame");
            match verdict {
                Some(out_of_date) => {
                    // This target is out of date, and so is every target
                    // below it on the stack, which depends on it.
                    for frame in stack.drain(..) {
                        on_stack.remove(&frame.key);
                        self.verdicts.insert(frame.key, out_of_date);
                    }
                }
                None => frame.next += 1,
            }
        }
        Ok(self.verdicts.get(key).copied().unwrap_or(false))
    }

    /// Starts looking at a target: `Err(verdict)` when its own state decides.
    fn open(&mut self, key: &Path) -> Result<Result<Frame, bool>, StoreError> {
        if let Some(&verdict) = self.verdicts.get(key) {
            return Ok(Err(verdict));
        }
        let Some(record) = self.store.file(key)? else {
            return Ok(Err(true));
        };
        if let Some(verdict) = self.own_state(key, &record) {
            self.verdicts.insert(key.to_path_buf(), verdict);
            return Ok(Err(verdict));
        }
        let deps = match record.id {
            Some(id) => self.store.deps(id)?,
            None => Vec::new(),
        };
        Ok(Ok(Frame { key: key.to_path_buf(), deps, next: 0 }))
    }

    /// Decides a target from its own flags and file, when they suffice.
    fn own_state(&self, key: &Path, record: &FileRecord) -> Option<bool> {
        if !record.is_target || record.has(flags::MODIFIED) {
            return Some(false);
        }
        if record.has(flags::FAILED | flags::BUILDING | flags::ALWAYS) {
            return Some(true);
        }
        let abs = paths::from_key(self.top, key);
        let stamp = Stamp::read_target(&abs).ok()?;
        if stamp.exists() && matches!(self.resolver.resolve(&abs), Ok(Resolution { found: None, .. })) {
            // Its .do file is gone: the next run keeps the file as a source.
            return Some(false);
        }
        if record.stamp.exists() && !stamp.exists() {
            return Some(true);
        }
        // A file changed by hand counts as a source: not out of date.
        if stamp.exists() && target_changed(&abs, record, &stamp) {
            return Some(false);
        }
        None
    }

    fn dep_changed(&self, dep: &DepRecord) -> Result<DepState, StoreError> {
        let abs = paths::from_key(self.top, &dep.key);
        if dep.kind == DepKind::IfCreate {
            let exists = Stamp::read(&abs).map(|stamp| stamp.exists()).unwrap_or(true);
            return Ok(if exists { DepState::Changed } else { DepState::Unchanged });
        }
        let Some(record) = self.store.file(&dep.key)? else {
            return Ok(DepState::Changed);
        };
        if record.is_target && !record.has(flags::MODIFIED) {
            return Ok(DepState::Target(record));
        }
        let changed = match Stamp::read(&abs) {
            Ok(stamp) => file_changed(&abs, &record, &stamp) || record.generation != dep.generation,
            Err(_) => true,
        };
        Ok(if changed { DepState::Changed } else { DepState::Unchanged })
    }
}

enum DepState {
    Changed,
    Unchanged,
    Target(FileRecord),
}

/// Tells whether a target's file differs from what its last build left.
fn target_changed(abs: &Path, record: &FileRecord, stamp: &Stamp) -> bool {
    if record.stamp.kind != stamp.kind {
        return true;
    }
    if stamp.kind == FileKind::Dir || (*stamp == record.stamp && !stamp.is_racy(record.seen_ns)) {
        return false;
    }
    !matches!(target_hash(abs, stamp), Ok(hash) if hash == record.hash)
}

/// Tells whether a source's content differs from its record.
fn file_changed(abs: &Path, record: &FileRecord, stamp: &Stamp) -> bool {
    if record.stamp.kind != stamp.kind {
        return true;
    }
    if *stamp == record.stamp && !stamp.is_racy(record.seen_ns) {
        return false;
    }
    match content_hash(abs, stamp) {
        Ok(Some(hash)) => Some(hash) != record.hash,
        Ok(None) => *stamp != record.stamp,
        Err(_) => true,
    }
}

/// Data that `redo-log` shows of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetLog {
    /// Whether redo builds the file (otherwise it is a source).
    pub is_target: bool,
    /// Whether a run is building it now.
    pub building: bool,
    /// Id of the run that last built it.
    pub built_run: i64,
    /// Its stored log, if it was built with logging on.
    pub log: Option<LogRecord>,
    /// Keys of the files it depends on with `redo-ifchange`, in order.
    pub deps: Vec<PathBuf>,
}

/// Reads what `redo-log` needs to know of the target with the given key.
pub fn target_log(top: &Path, key: &Path) -> Result<Option<TargetLog>, StoreError> {
    let Some(store) = Store::open_read_only(top)? else { return Ok(None) };
    store.snapshot(|store| {
        let Some(record) = store.file(key)? else { return Ok(None) };
        let Some(id) = record.id else { return Ok(None) };
        let deps = store.deps(id)?.into_iter().filter(|dep| dep.kind == DepKind::IfChange).map(|dep| dep.key).collect();
        // A run killed by SIGKILL leaves its mark, but not its lock.
        let building =
            record.has(flags::BUILDING) && crate::locks::is_being_built(&top.join(crate::constants::STATE_DIR), key);
        Ok(Some(TargetLog {
            is_target: record.is_target,
            building,
            built_run: record.built_run,
            log: store.log(id)?,
            deps,
        }))
    })
}
