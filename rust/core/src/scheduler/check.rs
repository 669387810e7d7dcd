//! Deciding whether a node is up to date.
//!
//! A source is up to date by definition; checking it only refreshes its
//! stamp and, when its content changed, its generation. A target is out of
//! date when its last build failed, did not finish, called `redo-always`, or
//! left a file that is now gone, or when one of its recorded dependencies
//! changed: an `ifcreate` file appeared, or an `ifchange` file has another
//! generation than the one the target was built against. Dependencies are
//! checked in the order they were recorded and the check stops at the first
//! change, so a changed `.do` file (always recorded first) stops it before
//! dependencies that the new script may no longer want.

use std::path::PathBuf;

use crate::paths;
use crate::stamp::{FileKind, Stamp, content_hash, now_ns, target_hash};
use crate::store::{DepKind, flags};

use super::{EventKind, Failure, NodeId, Outcome, Scheduler, State, Waiter};

impl Scheduler<'_> {
    /// Starts looking at a node that this run has not settled yet. `force`
    /// builds a target even if it is up to date.
    pub(super) fn visit(&mut self, id: NodeId, force: bool) {
        self.graph[id].forced |= force;
        self.load(id);
        let abs = self.graph[id].abs.clone();
        let is_target = self.graph[id].record.as_ref().is_some_and(|record| record.is_target);
        let read = if is_target { Stamp::read_target(&abs) } else { Stamp::read(&abs) };
        let stamp = match read {
            Ok(stamp) => stamp,
            Err(err) => {
                return self.fail(id, Failure::Io { path: self.display(id), err });
            }
        };
        let Some(record) = self.graph[id].record.clone().filter(|record| record.is_target) else {
            // Never built by redo: a file that exists is a source.
            if !stamp.exists() {
                return self.dirty(id, "it does not exist");
            }
            if force {
                let message = format!(
                    "not building {}: it exists and redo did not create it, so it is a source",
                    self.quoted(id)
                );
                self.report(EventKind::Warning, id, message);
            }
            return self.settle_source(id, stamp);
        };
        if record.has(flags::MODIFIED) {
            if stamp.exists() {
                self.warn_modified(id);
                return self.settle_as_source(id);
            }
            self.record_mut(id).set(flags::MODIFIED, false);
            return self.dirty(id, "it was changed by hand and then deleted");
        }
        if !record.has(flags::BUILDING) && stamp.exists() && self.changed_by_hand(id, &stamp) {
            let record = self.record_mut(id);
            record.set(flags::MODIFIED, true);
            record.generation += 1;
            self.warn_modified(id);
            return self.settle_as_source(id);
        }
        let reason = if force {
            "redo was asked to build it"
        } else if record.has(flags::BUILDING) {
            "its last build did not finish"
        } else if record.has(flags::FAILED) {
            "its last build failed"
        } else if record.has(flags::ALWAYS) {
            "it calls redo-always"
        } else if record.stamp.exists() && !stamp.exists() {
            "it was deleted"
        } else {
            return self.start_check(id, record.id);
        };
        self.dirty(id, reason);
    }

    fn start_check(&mut self, id: NodeId, row: Option<i64>) {
        // A target built earlier in this run and checked again (after
        // redo-flush-cache) has its dependencies in a pending write.
        if !self.pending.is_empty() && !self.commit() {
            return self.finish(id, Outcome::Failed);
        }
        let deps = match (&self.store, row) {
            (Some(store), Some(row)) => match store.deps(row) {
                Ok(deps) => deps,
                Err(err) => {
                    self.set_fatal(err);
                    return self.finish(id, Outcome::Failed);
                }
            },
            _ => Vec::new(),
        };
        self.graph[id].state = State::Checking { deps, next: 0, waiting_on: None };
        self.ready.push(id);
    }

    /// Walks a checking node's dependencies until one changed, one is still
    /// in progress, or none is left.
    pub(super) fn advance(&mut self, id: NodeId) {
        loop {
            let State::Checking { deps, next, waiting_on: None } = &self.graph[id].state else {
                return;
            };
            let Some(dep) = deps.get(*next).cloned() else {
                return self.finish(id, Outcome::Ok);
            };
            let dep_abs = paths::from_key(self.top(), &dep.key);
            if dep.kind == DepKind::IfCreate {
                match Stamp::read(&dep_abs) {
                    Ok(stamp) if stamp.exists() => {
                        let reason = format!("'{}' was created", self.relative(&dep_abs).display());
                        return self.dirty(id, &reason);
                    }
                    Ok(_) => {}
                    Err(err) => {
                        return self.fail(id, Failure::Io { path: self.relative(&dep_abs), err });
                    }
                }
                self.step(id);
                continue;
            }
            let dep_id = self.graph.intern(&self.config.top, &dep_abs);
            if matches!(self.graph[dep_id].state, State::Idle) {
                let (priority, depth) = (self.graph[id].priority.clone(), self.graph[id].depth + 1);
                let position = self.position();
                self.graph.place(dep_id, &priority, position, depth);
                self.graph[dep_id].requested_by.get_or_insert(id);
                self.visit(dep_id, false);
            }
            match self.graph[dep_id].outcome() {
                Some(Outcome::Failed) => return self.fail(id, Failure::Dependency(dep_id)),
                Some(_) if self.graph[dep_id].generation() != dep.generation => {
                    let reason = format!("its dependency {} changed", self.quoted(dep_id));
                    return self.dirty(id, &reason);
                }
                Some(_) => self.step(id),
                None => return self.wait_for(id, dep_id),
            }
        }
    }

    fn step(&mut self, id: NodeId) {
        if let State::Checking { next, .. } = &mut self.graph[id].state {
            *next += 1;
        }
    }

    /// Makes a checking node wait for a dependency that is in progress,
    /// unless that dependency is itself waiting for the node.
    fn wait_for(&mut self, id: NodeId, dep_id: NodeId) {
        if let Some(path) = self.find_wait_path(dep_id, id) {
            let mut cycle = vec![id];
            cycle.extend(path);
            return self.fail(id, Failure::Cycle(cycle));
        }
        if let State::Checking { waiting_on, .. } = &mut self.graph[id].state {
            *waiting_on = Some(dep_id);
        }
        self.graph[dep_id].waiters.push(Waiter::Check(id));
    }

    /// Settles a target that is now treated as a source, reading its stamp
    /// the way sources are read.
    fn settle_as_source(&mut self, id: NodeId) {
        match Stamp::read(&self.graph[id].abs) {
            Ok(stamp) => self.settle_source(id, stamp),
            Err(err) => self.fail(id, Failure::Io { path: self.display(id), err }),
        }
    }

    /// Settles an existing file as a source: refreshes its stamp, and gives it
    /// a new generation when its content changed.
    pub(super) fn settle_source(&mut self, id: NodeId, stamp: Stamp) {
        if let Err(err) = self.refresh(id, stamp) {
            return self.fail(id, Failure::Io { path: self.display(id), err });
        }
        self.finish(id, Outcome::Ok);
    }

    /// Records the current stamp of a node's file, hashing it when the stamp
    /// cannot tell whether the content changed.
    pub(super) fn refresh(&mut self, id: NodeId, stamp: Stamp) -> std::io::Result<()> {
        let node = &self.graph[id];
        let (recorded, seen_ns, old_hash) = match &node.record {
            Some(record) => (record.stamp, record.seen_ns, record.hash),
            None => (Stamp::MISSING, 0, None),
        };
        let new_record = node.record.is_none();
        if !new_record && recorded == stamp && !stamp.is_racy(seen_ns) {
            return Ok(());
        }
        let hash = content_hash(&node.abs, &stamp)?;
        let unchanged = !new_record
            && recorded.kind == stamp.kind
            && match (hash, old_hash) {
                (Some(new), Some(old)) => new == old,
                // Directories and special files have no hash: trust the stamp.
                (None, None) => recorded == stamp,
                _ => false,
            };
        let record = self.record_mut(id);
        record.stamp = stamp;
        record.seen_ns = now_ns();
        record.hash = hash;
        if !unchanged && !new_record {
            record.generation += 1;
        }
        Ok(())
    }

    /// Tells whether a target's file differs from what its last build left.
    fn changed_by_hand(&mut self, id: NodeId, stamp: &Stamp) -> bool {
        let Some(record) = &self.graph[id].record else {
            return false;
        };
        if !record.stamp.exists() {
            // The last build produced no file, and now there is one.
            return true;
        }
        if stamp.kind == FileKind::Dir || record.stamp.kind == FileKind::Dir {
            // A directory's own stamp changes whenever anything writes inside
            // it, so it cannot tell a hand edit from normal use.
            return false;
        }
        if *stamp == record.stamp && !stamp.is_racy(record.seen_ns) {
            return false;
        }
        let expected = record.hash;
        match target_hash(&self.graph[id].abs, stamp) {
            Ok(hash) if hash == expected => {
                let record = self.record_mut(id);
                record.stamp = *stamp;
                record.seen_ns = now_ns();
                false
            }
            Ok(_) => true,
            // Unreadable now: let the rebuild report the problem.
            Err(_) => false,
        }
    }

    fn warn_modified(&mut self, id: NodeId) {
        let message = format!(
            "{} was changed outside redo; keeping it and treating it as a source \
             (delete it to have redo build it again)",
            self.quoted(id)
        );
        self.report(EventKind::Warning, id, message);
    }

    /// Handles a node that must be built: finds its `.do` file and queues it
    /// for a job token, or settles it when nothing can build it.
    pub(super) fn dirty(&mut self, id: NodeId, reason: &str) {
        if self.config.debug {
            let message = format!("{} is out of date: {reason}", self.quoted(id));
            self.report(EventKind::Explain, id, message);
        }
        if self.stopping {
            self.abandoned.insert(id);
            return self.finish(id, Outcome::Failed);
        }
        let abs = self.graph[id].abs.clone();
        let resolution = match self.resolver.resolve(&abs) {
            Ok(resolution) => resolution,
            Err(message) => return self.fail(id, Failure::Resolve(message)),
        };
        if let Some(found) = resolution.found {
            self.graph[id].state = State::Queued { found, missing: resolution.missing };
            let priority = self.graph[id].priority.clone();
            self.queue.push(std::cmp::Reverse((priority, id)));
            return;
        }
        let stamp = match Stamp::read(&abs) {
            Ok(stamp) => stamp,
            Err(err) => {
                return self.fail(id, Failure::Io { path: self.display(id), err });
            }
        };
        if stamp.exists() {
            if self.graph[id].record.as_ref().is_some_and(|record| record.is_target) {
                let message = format!("no .do file builds {} any more; it is now a source", self.quoted(id));
                self.report(EventKind::Warning, id, message);
                let record = self.record_mut(id);
                record.is_target = false;
                record.flags = 0;
            }
            return self.settle_source(id, stamp);
        }
        // Nothing exists and nothing builds it. For a check, the dependency
        // changed; a request reports the error.
        if let Err(err) = self.refresh(id, stamp) {
            return self.fail(id, Failure::Io { path: self.display(id), err });
        }
        self.finish(id, Outcome::Missing);
    }

    /// Path of a file relative to the start directory.
    pub(super) fn relative(&self, abs: &std::path::Path) -> PathBuf {
        paths::relative(abs, &self.config.startdir)
    }
}
