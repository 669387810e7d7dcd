//! Locks that keep two runs on one tree from building a target at once.

use std::time::{Duration, Instant};

use crate::locks::{LOCK_FILE, Locks};
use crate::report::EventKind;

use super::{Failure, NodeId, Scheduler, State};

/// How long a target waits for another run before redo says so.
const LONG_WAIT: Duration = Duration::from_secs(10);

impl Scheduler<'_> {
    /// Takes the cross-run lock of a target about to be built. Returns false
    /// when the node cannot start now: another run holds the lock (the node
    /// then waits for it), or the lock file cannot be used (the node failed).
    pub(super) fn lock_target(&mut self, id: NodeId) -> bool {
        let dir = self.top().join(crate::constants::STATE_DIR);
        if self.locks.is_none() {
            match Locks::open(&dir) {
                Ok(locks) => self.locks = Some(locks),
                Err(err) => {
                    self.fail(id, Failure::Io { path: dir.join(LOCK_FILE), err });
                    return false;
                }
            }
        }
        let Some(locks) = &self.locks else { return false };
        match locks.try_lock(&self.graph[id].key) {
            Ok(true) if self.built_elsewhere(id) => {
                // Another run built it after this one checked it and released
                // the lock before this run asked for it: check it again.
                self.unlock_target(id);
                self.recheck(id);
                false
            }
            Ok(true) => true,
            Ok(false) => {
                self.graph[id].state = State::WaitingForLock;
                self.lock_waiters.push((id, Instant::now(), false));
                let message = format!("waiting for {}: another redo is building it", self.quoted(id));
                self.report_lock(id, message);
                false
            }
            Err(err) => {
                self.fail(id, Failure::Io { path: dir.join(LOCK_FILE), err });
                false
            }
        }
    }

    /// Releases the cross-run lock of a target.
    pub(super) fn unlock_target(&mut self, id: NodeId) {
        if let Some(locks) = &self.locks {
            locks.unlock(&self.graph[id].key);
        }
    }

    /// Tells whether some target waits for a lock that another run holds.
    pub fn waiting_for_locks(&self) -> bool {
        !self.lock_waiters.is_empty()
    }

    /// Checks again the targets whose lock another run released: that run
    /// may have built them, so their state is read afresh from the database.
    pub fn retry_locks(&mut self) {
        let Some(locks) = &self.locks else { return };
        let (free, held): (Vec<_>, Vec<_>) = std::mem::take(&mut self.lock_waiters)
            .into_iter()
            .partition(|&(id, _, _)| !locks.is_held_elsewhere(&self.graph[id].key).unwrap_or(false));
        self.lock_waiters = held;
        self.warn_long_waits();
        if !free.is_empty() {
            // The other run committed before it released the lock; a read
            // transaction opened before that would not show its work.
            self.end_reads();
        }
        for (id, _, _) in free {
            let message = format!("{} is free again; checking it", self.quoted(id));
            self.report_lock(id, message);
            self.recheck(id);
        }
    }

    /// Tells whether another run built a target since this run read its
    /// record: the database, read afresh, names a later build.
    fn built_elsewhere(&mut self, id: NodeId) -> bool {
        let Some(store) = &self.store else { return false };
        let loaded = self.graph[id].record.as_ref().map_or(0, |record| record.built_run);
        store.end_reads();
        match store.file(&self.graph[id].key) {
            Ok(fresh) => fresh.map_or(0, |record| record.built_run) != loaded,
            Err(err) => {
                self.set_fatal(err);
                false
            }
        }
    }

    /// Checks a target again from its state in the database.
    fn recheck(&mut self, id: NodeId) {
        let node = &mut self.graph[id];
        node.loaded = false;
        node.record = None;
        node.state = State::Idle;
        let forced = node.forced && !node.built;
        self.visit(id, forced);
    }

    /// Says once, even without `--debug-locks`, that a target has waited
    /// long for another run: two runs whose targets depend on each other
    /// across runs wait for each other for ever.
    fn warn_long_waits(&mut self) {
        let mut late = Vec::new();
        for (id, since, warned) in &mut self.lock_waiters {
            if !*warned && since.elapsed() >= LONG_WAIT {
                *warned = true;
                late.push(*id);
            }
        }
        for id in late {
            let message = format!(
                "still waiting for {} after {} s: another redo is building it; if that one waits for \
                 this run in turn, stop one of them",
                self.quoted(id),
                LONG_WAIT.as_secs()
            );
            self.report(EventKind::Warning, id, message);
        }
    }

    fn report_lock(&self, id: NodeId, message: String) {
        if self.config.debug_locks {
            self.report(EventKind::Lock, id, message);
        }
    }
}
