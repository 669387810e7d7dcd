//! The scheduler's side of the state database: records are loaded when a
//! node is first needed, changed in memory, and written in short
//! transactions at the points where a killed run must find them written:
//! before a job starts, and before the engine waits for the next event.

use crate::store::{DepKind, FileRecord, LogRecord, Store, StoreError, Writer};

use super::graph::Graph;
use super::{NodeId, Scheduler};

/// A change besides file records that waits for the next write.
pub(super) enum Pending {
    /// A built target's dependencies, with the generation of each when the
    /// target was built.
    Deps { target: NodeId, deps: Vec<(NodeId, DepKind, i64)> },
    /// The log of a target's build.
    Log { target: NodeId, log: LogRecord },
}

impl Scheduler<'_> {
    /// Loads a node's database record the first time it is needed.
    pub(super) fn load(&mut self, id: NodeId) {
        if self.graph[id].loaded {
            return;
        }
        self.graph[id].loaded = true;
        let Some(store) = &self.store else { return };
        match store.file(&self.graph[id].key) {
            Ok(record) => self.graph[id].record = record,
            Err(err) => self.set_fatal(err),
        }
    }

    /// Lets the next read see what other runs committed since the last one;
    /// the engine calls it before it waits for events.
    pub fn end_reads(&self) {
        if let Some(store) = &self.store {
            store.end_reads();
        }
    }

    pub(super) fn set_fatal(&mut self, err: StoreError) {
        if self.fatal.is_none() {
            self.fatal = Some(err);
        }
        self.stopping = true;
    }

    /// Opens (creating if needed) the database and records the run; returns
    /// false after a fatal error.
    pub(super) fn ensure_store(&mut self) -> bool {
        if self.fatal.is_some() {
            return false;
        }
        if self.store.is_none() {
            match Store::create(&self.config.top) {
                Ok(store) => self.store = Some(store),
                Err(err) => {
                    self.set_fatal(err);
                    return false;
                }
            }
        }
        if self.run_id == 0 {
            let (pid, now) = (std::process::id(), crate::stamp::now_ns());
            let startdir = self.config.startdir.clone();
            let command = self.config.command.clone();
            match self.write(|w, _| w.start_run(pid, now, &startdir, &command)) {
                Some(id) => self.run_id = id,
                None => return false,
            }
        }
        true
    }

    /// Runs `body` in a write transaction after saving every changed record,
    /// so that the body can read the row ids of all of them. Returns `None` after
    /// a fatal database error.
    pub(super) fn write<T>(&mut self, body: impl FnOnce(&Writer<'_>, &Graph) -> Result<T, StoreError>) -> Option<T> {
        let store = self.store.as_mut()?;
        let unsaved = std::mem::take(&mut self.unsaved);
        let graph = &mut self.graph;
        let result = store.write(|w| {
            for &id in &unsaved {
                let node = &mut graph[id];
                if let Some(record) = node.record.as_mut() {
                    w.put_file(&node.key, record)?;
                }
                node.unsaved = false;
            }
            body(w, graph)
        });
        match result {
            Ok(value) => Some(value),
            Err(err) => {
                self.set_fatal(err);
                None
            }
        }
    }

    /// Writes every changed record and pending change in one transaction,
    /// then releases the locks that waited for it. Returns false after a
    /// fatal database error.
    pub(super) fn commit(&mut self) -> bool {
        let pending = std::mem::take(&mut self.pending);
        // Without a database nothing was built yet: there is nothing to keep.
        let written = if self.store.is_none() || (self.unsaved.is_empty() && pending.is_empty()) {
            true
        } else {
            self.write(|w, graph| {
                let row = |id: NodeId| graph[id].record.as_ref().and_then(|record| record.id);
                for change in &pending {
                    match change {
                        Pending::Deps { target, deps } => {
                            let Some(target) = row(*target) else { continue };
                            let edges: Vec<(i64, DepKind, i64)> = deps
                                .iter()
                                .filter_map(|&(dep, kind, generation)| Some((row(dep)?, kind, generation)))
                                .filter(|&(dep, _, _)| dep != target)
                                .collect();
                            w.set_deps(target, &edges)?;
                        }
                        Pending::Log { target, log } => {
                            if let Some(target) = row(*target) {
                                w.put_log(target, log)?;
                            }
                        }
                    }
                }
                Ok(())
            })
            .is_some()
        };
        for id in std::mem::take(&mut self.unlock_after_write) {
            self.unlock_target(id);
        }
        self.last_commit = std::time::Instant::now();
        written
    }

    /// Saves everything and the run's end; called once at the end.
    pub fn finish_run(&mut self, status: i32) {
        if self.store.is_none() {
            return;
        }
        self.commit();
        let run = self.run_id;
        let now = crate::stamp::now_ns();
        self.write(|w, _| if run > 0 { w.finish_run(run, now, status) } else { Ok(()) });
    }

    /// Returns a node's record for changing, creating an empty source record
    /// if there is none, and remembers to save it.
    pub(super) fn record_mut(&mut self, id: NodeId) -> &mut FileRecord {
        let node = &mut self.graph[id];
        if !node.unsaved {
            node.unsaved = true;
            self.unsaved.push(id);
        }
        node.record.get_or_insert_with(Default::default)
    }
}
