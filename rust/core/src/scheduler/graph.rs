//! The nodes of one run: every file the run has looked at, with its state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::paths;
use crate::resolve::DoMatch;
use crate::store::{DepRecord, FileRecord};

use super::JobId;

/// Index of a node in the run's [`Graph`].
pub(crate) type NodeId = usize;

/// Index of a pending request.
pub(crate) type RequestId = usize;

/// Order in which queued targets get a job token: the path of positions from
/// the requested targets down to this one, compared lexicographically. It
/// makes `-j1` build depth-first in the order the scripts asked.
pub(crate) type Priority = Rc<[u32]>;

/// Outcome of a finished node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Up to date, built, or a source that exists.
    Ok,
    /// Its build, or the build of something it needs, failed.
    Failed,
    /// It does not exist and no `.do` file builds it.
    Missing,
}

/// Progress of a node in this run.
#[derive(Debug)]
pub(crate) enum State {
    /// Not looked at yet in this run.
    Idle,
    /// Walking the recorded dependencies in order; `waiting_on` is set while
    /// the dependency at `next` is still being checked or built.
    Checking { deps: Vec<DepRecord>, next: usize, waiting_on: Option<NodeId> },
    /// Out of date and waiting for a job token.
    Queued { found: DoMatch, missing: Vec<PathBuf> },
    /// A job is building it.
    Running(JobId),
    /// Out of date, but another run holds its lock: checked again when the
    /// lock is free.
    WaitingForLock,
    /// Settled for the rest of the run.
    Done(Outcome),
}

/// Something waiting for a node to settle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waiter {
    /// The dependency check of another node.
    Check(NodeId),
    /// A request from an inner command or from the top level.
    Request(RequestId),
}

/// One file of the run.
#[derive(Debug)]
pub(crate) struct Node {
    /// Key in the state database.
    pub key: PathBuf,
    /// Absolute path.
    pub abs: PathBuf,
    /// Database record; `None` when the database has never seen the file.
    pub record: Option<FileRecord>,
    /// Whether `record` was read from the database yet.
    pub loaded: bool,
    /// Whether `record` changed and must be written.
    pub unsaved: bool,
    /// Progress in this run.
    pub state: State,
    /// Checks and requests that wait for this node to settle.
    pub waiters: Vec<Waiter>,
    /// Token order, set when the node is first needed.
    pub priority: Priority,
    /// Nesting depth below the requested targets, for display.
    pub depth: usize,
    /// Whether a job built the node in this run.
    pub built: bool,
    /// Whether a forced build was asked for while the node was in progress.
    pub force_pending: bool,
    /// Whether a forced build was asked for in this run.
    pub forced: bool,
    /// The target whose script first asked for this one, if any.
    pub requested_by: Option<NodeId>,
    /// Whether the "cannot build" message for a missing node was shown.
    pub reported_missing: bool,
}

/// Every node of the run, indexed by key.
#[derive(Default)]
pub(crate) struct Graph {
    nodes: Vec<Node>,
    index: HashMap<PathBuf, NodeId>,
}

impl Graph {
    /// Returns the number of nodes in the run's graph.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Returns the node of an absolute path, creating it if needed.
    pub fn intern(&mut self, top: &Path, abs: &Path) -> NodeId {
        let key = paths::key(top, abs);
        if let Some(&id) = self.index.get(&key) {
            return id;
        }
        let id = self.nodes.len();
        self.nodes.push(Node {
            key: key.clone(),
            abs: abs.to_path_buf(),
            record: None,
            loaded: false,
            unsaved: false,
            state: State::Idle,
            waiters: Vec::new(),
            priority: Rc::from([]),
            depth: 0,
            built: false,
            force_pending: false,
            forced: false,
            requested_by: None,
            reported_missing: false,
        });
        self.index.insert(key, id);
        id
    }

    /// Sets where a node sits in the run the first time something needs it.
    pub fn place(&mut self, id: NodeId, parent_priority: &[u32], position: u32, depth: usize) {
        let node = &mut self.nodes[id];
        if node.priority.is_empty() {
            let mut priority = parent_priority.to_vec();
            priority.push(position);
            node.priority = Rc::from(priority);
            node.depth = depth;
        }
    }

    /// Iterates over the ids of all nodes.
    pub fn ids(&self) -> std::ops::Range<NodeId> {
        0..self.nodes.len()
    }
}

impl std::ops::Index<NodeId> for Graph {
    type Output = Node;

    fn index(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }
}

impl std::ops::IndexMut<NodeId> for Graph {
    fn index_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id]
    }
}

impl Node {
    /// Tells whether the node settled for this run.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.state {
            State::Done(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// Generation of the file as recorded, 0 when it was never recorded.
    pub fn generation(&self) -> i64 {
        self.record.as_ref().map_or(0, |record| record.generation)
    }
}
