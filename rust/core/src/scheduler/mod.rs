//! The scheduler decides what to check, what to build and when to reply.
//!
//! It is a state machine driven by the engine's event loop: the engine feeds
//! it requests and job exits, and drains the [`Action`]s it produces (start a
//! process, send a reply). It never blocks and never recurses through the
//! dependency graph: nodes whose check can go on sit on a work stack, so deep
//! chains cost no stack and every wait is an explicit edge that cycle
//! detection can follow.
//!
//! Parallelism is bounded by job tokens. A job holds one while its script
//! runs and gives it back while an inner command it called is waiting, so
//! nested calls never deadlock, even with one token.

mod build;
mod check;
mod graph;
mod locking;
mod logs;
mod requests;
mod state;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::engine::Config;
use crate::locks::Locks;
use crate::output::{CapturePool, JobFiles, OutputError};
use crate::paths;
use crate::protocol::Reply;
use crate::report::{Event, EventKind, Reporter};
use crate::resolve::Resolver;
use crate::stamp::Hash;
use crate::store::{DepKind, Store, StoreError};
use crate::tokens::{Token, Tokens};

use graph::Graph;
pub(crate) use graph::{NodeId, Outcome, Priority, RequestId, State, Waiter};

/// Identity of a job, passed to its script in `REDORS_JOB`.
pub(crate) type JobId = u64;

/// Identity of a connection from an inner command.
pub(crate) type ClientId = u64;

/// End of a job's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// It exited with this status.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl ExitStatus {
    /// Tells whether the script succeeded.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

/// Work for the engine.
#[derive(Debug)]
pub(crate) enum Action {
    /// Start the process of a job.
    Spawn { job: JobId, spec: JobSpec },
    /// Send a reply to an inner command and close its connection.
    Reply { client: ClientId, reply: Reply },
}

/// Everything needed to start a job's process.
#[derive(Debug)]
pub(crate) struct JobSpec {
    /// Program and arguments.
    pub argv: Vec<OsString>,
    /// Working directory: the directory of the `.do` file.
    pub cwd: PathBuf,
    /// The whole environment.
    pub env: Vec<(OsString, OsString)>,
    /// File that receives the script's stdout.
    pub stdout: File,
    /// File that receives the script's stderr; `None` leaves the engine's.
    pub stderr: Option<File>,
    /// Descriptors that the script inherits (the jobserver pipe).
    pub inherit: Vec<std::os::fd::RawFd>,
}

/// Reason a node failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The script exited with a failure status.
    Script { status: ExitStatus, dofile: PathBuf, failed_dep: Option<FailedDep> },
    /// The script's output broke a rule.
    Output { dofile: PathBuf, err: OutputError },
    /// The script could not be started.
    Spawn { dofile: PathBuf, err: std::io::Error },
    /// The `.do` search failed.
    Resolve(String),
    /// Reading a file failed.
    Io { path: PathBuf, err: std::io::Error },
    /// A dependency failed while checking this node.
    Dependency(NodeId),
    /// The node depends on itself through this chain.
    Cycle(Vec<NodeId>),
}

/// A dependency that failed while a job waited for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailedDep {
    /// Its build failed.
    Failed(NodeId),
    /// Asking for it would have closed a dependency cycle.
    Cycle(NodeId),
}

/// A running job.
pub(crate) struct Job {
    /// The target being built.
    node: NodeId,
    /// `$3` and the stdout capture.
    files: JobFiles,
    /// The `.do` file, for messages.
    dofile: PathBuf,
    /// Dependencies recorded so far, in order.
    deps: Vec<(NodeId, DepKind)>,
    /// Whether the script called `redo-always`.
    always: bool,
    /// Value the script passed to `redo-stamp`.
    stamp: Option<Hash>,
    /// Requests from the job's inner commands that have no reply yet.
    outstanding: Vec<RequestId>,
    /// The job's token; given back while the job waits for inner commands.
    token: Option<Token>,
    /// Dependencies that failed while the job waited for them.
    failed_deps: Vec<FailedDep>,
    /// How much of the job's stderr was read.
    log_offset: u64,
    /// Read stderr that does not end with a newline yet.
    partial: Vec<u8>,
    /// Offsets in the job's stderr at which the builds it requested started.
    children: Vec<(u64, PathBuf)>,
}

/// The scheduler of one run.
pub(crate) struct Scheduler<'a> {
    config: &'a Config,
    resolver: &'a dyn Resolver,
    reporter: &'a dyn Reporter,
    /// The part of the jobs' environment that is the same for every job.
    base_env: Vec<(OsString, OsString)>,
    /// The state database; `None` until the run first writes, so that a run
    /// that builds nothing leaves no `.redo/` behind.
    store: Option<Store>,
    /// Id of this run in the database; 0 until the database is opened.
    run_id: i64,
    graph: Graph,
    requests: requests::Requests,
    jobs: HashMap<JobId, Job>,
    next_job: JobId,
    /// Counter for [`Priority`] positions.
    next_position: u32,
    /// Nodes whose dependency check can make progress.
    ready: Vec<NodeId>,
    /// Out-of-date nodes waiting for a token, best priority first.
    queue: BinaryHeap<Reverse<(Priority, NodeId)>>,
    /// Replies to jobs that may go on once they get a token back.
    resume: VecDeque<(JobId, ClientId, Reply)>,
    tokens: Tokens,
    /// Set after a failure without `--keep-going`: nothing new starts.
    stopping: bool,
    /// Nodes that failed, in order.
    failed: Vec<NodeId>,
    /// Nodes whose own failure was reported.
    reported_failures: HashSet<NodeId>,
    /// Nodes that a stopping run gave up on before they could build, and
    /// those that needed them: their failure is not an error of its own.
    abandoned: HashSet<NodeId>,
    /// Nodes whose record changed since the last write.
    unsaved: Vec<NodeId>,
    /// Dependency lists and logs waiting for the next write.
    pending: Vec<state::Pending>,
    /// Targets whose cross-run lock is released once the next write commits.
    unlock_after_write: Vec<NodeId>,
    /// When the last write committed.
    last_commit: std::time::Instant,
    /// Stdout capture files, reused between jobs.
    captures: CapturePool,
    /// The tree's lock file, opened when the first job starts.
    locks: Option<Locks>,
    /// Nodes waiting for a lock that another run holds, since when, and
    /// whether redo said that the wait is long.
    lock_waiters: Vec<(NodeId, std::time::Instant, bool)>,
    /// State of the random generator behind `--shuffle`.
    shuffle_state: u64,
    actions: VecDeque<Action>,
    /// A database error that ends the run.
    fatal: Option<StoreError>,
}

/// How long a finished build may wait for the next job's commit before it
/// is committed on its own. Until then, another run that waits for the
/// target waits this much longer.
const COMMIT_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

impl<'a> Scheduler<'a> {
    /// Creates the scheduler of a run; `store` is the existing database, if any.
    pub fn new(
        config: &'a Config,
        resolver: &'a dyn Resolver,
        reporter: &'a dyn Reporter,
        socket: PathBuf,
        store: Option<Store>,
        tokens: Tokens,
    ) -> Scheduler<'a> {
        Scheduler {
            config,
            resolver,
            reporter,
            base_env: build::base_env(config, &socket, tokens.handoff()),
            store,
            run_id: 0,
            graph: Graph::default(),
            requests: requests::Requests::default(),
            jobs: HashMap::new(),
            next_job: 1,
            next_position: 0,
            ready: Vec::new(),
            queue: BinaryHeap::new(),
            resume: VecDeque::new(),
            tokens,
            stopping: false,
            failed: Vec::new(),
            reported_failures: HashSet::new(),
            abandoned: HashSet::new(),
            unsaved: Vec::new(),
            pending: Vec::new(),
            unlock_after_write: Vec::new(),
            last_commit: std::time::Instant::now(),
            captures: CapturePool::new(config.top.join(crate::constants::STATE_DIR).join("tmp")),
            locks: None,
            lock_waiters: Vec::new(),
            shuffle_state: (crate::stamp::now_ns() as u64) ^ (u64::from(std::process::id()) << 32) | 1,
            actions: VecDeque::new(),
            fatal: None,
        }
    }

    /// Takes the next action for the engine. What the run changed is
    /// committed before a job starts, since its BUILDING mark must be on
    /// disk first. A finished build rides along with that commit when one
    /// comes soon, or is committed once nothing runs or [`COMMIT_DELAY`]
    /// passed (see [`Scheduler::commit_due`]): a build then costs one
    /// transaction per job. Refreshed stamps of sources go with the next one.
    pub fn next_action(&mut self) -> Option<Action> {
        let must_commit = match self.actions.front() {
            Some(Action::Spawn { .. }) => true,
            Some(Action::Reply { .. }) => false,
            None => self.commit_due() == Some(std::time::Duration::ZERO),
        };
        if must_commit && !self.commit() {
            return None;
        }
        self.actions.pop_front()
    }

    /// How long until finished builds waiting to be written must be
    /// committed; `None` when none waits.
    pub fn commit_due(&self) -> Option<std::time::Duration> {
        if self.pending.is_empty() && self.unlock_after_write.is_empty() {
            return None;
        }
        if self.jobs.is_empty() {
            return Some(std::time::Duration::ZERO);
        }
        Some(COMMIT_DELAY.saturating_sub(self.last_commit.elapsed()))
    }

    /// Takes the database error that ended the run, if any.
    pub fn take_fatal(&mut self) -> Option<StoreError> {
        self.fatal.take()
    }

    /// Targets that failed in this run, relative to the start directory.
    pub fn failed_targets(&self) -> Vec<PathBuf> {
        self.failed.iter().map(|&id| self.display(id)).collect()
    }

    /// Runs every check that can progress, then hands out job tokens.
    pub fn drain(&mut self) {
        loop {
            while let Some(id) = self.ready.pop() {
                self.advance(id);
            }
            self.pump();
            if self.ready.is_empty() {
                break;
            }
        }
    }

    /// Gives free tokens to waiting jobs first, then to queued targets, and
    /// requests from the jobserver as many more as are still needed.
    fn pump(&mut self) {
        if self.stopping {
            while let Some((_, client, reply)) = self.resume.pop_front() {
                self.actions.push_back(Action::Reply { client, reply });
            }
            let waiting: Vec<NodeId> =
                std::mem::take(&mut self.lock_waiters).into_iter().map(|(id, _, _)| id).collect();
            let queued = std::iter::from_fn(|| self.queue.pop().map(|Reverse((_, id))| id)).collect::<Vec<_>>();
            for id in waiting.into_iter().chain(queued) {
                self.abandoned.insert(id);
                self.finish(id, Outcome::Failed);
            }
            self.tokens.balance(0);
            return;
        }
        while self.tokens.has_free() {
            if let Some((job, client, reply)) = self.resume.pop_front() {
                if let Some(running) = self.jobs.get_mut(&job) {
                    running.token = self.tokens.take();
                }
                self.actions.push_back(Action::Reply { client, reply });
            } else if let Some(Reverse((_, id))) = self.queue.pop() {
                self.start_job(id);
            } else {
                break;
            }
        }
        self.tokens.balance(self.resume.len() + self.queue.len());
    }

    /// Takes the tokens that the jobserver delivered and uses them.
    pub fn collect_tokens(&mut self) {
        if let Some(message) = self.tokens.collect() {
            self.reporter.report(&Event {
                kind: EventKind::Warning,
                target: PathBuf::new(),
                depth: 0,
                message,
                count: 0,
            });
        }
        self.pump();
    }

    /// Returns the descriptor that becomes readable when jobserver tokens arrive.
    pub fn tokens_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.tokens.wake_fd()
    }

    /// Marks a node settled and wakes everything that waits for it.
    fn finish(&mut self, id: NodeId, outcome: Outcome) {
        let node = &mut self.graph[id];
        if outcome == Outcome::Ok && node.force_pending && !node.built {
            node.force_pending = false;
            self.dirty(id, "redo was asked to build it");
            return;
        }
        node.force_pending = false;
        node.state = State::Done(outcome);
        if outcome == Outcome::Failed {
            self.failed.push(id);
        }
        for waiter in std::mem::take(&mut self.graph[id].waiters) {
            match waiter {
                Waiter::Check(checker) => {
                    if let State::Checking { waiting_on, .. } = &mut self.graph[checker].state {
                        *waiting_on = None;
                        self.ready.push(checker);
                    }
                }
                Waiter::Request(request) => self.target_settled(request, id, outcome),
            }
        }
    }

    /// Reports why a node failed and settles it as failed.
    fn fail(&mut self, id: NodeId, failure: Failure) {
        if let Failure::Dependency(dep) = failure {
            if self.abandoned.contains(&dep) {
                self.abandoned.insert(id);
                return self.finish(id, Outcome::Failed);
            }
        }
        let message = self.failure_message(id, &failure);
        self.report(EventKind::Error, id, message);
        self.reported_failures.insert(id);
        if !self.config.keep_going {
            self.stopping = true;
        }
        self.finish(id, Outcome::Failed);
    }

    fn failure_message(&self, id: NodeId, failure: &Failure) -> String {
        let name = self.quoted(id);
        match failure {
            Failure::Script { status, dofile, failed_dep } => {
                let how = match status {
                    ExitStatus::Code(code) => format!("failed with exit status {code}"),
                    ExitStatus::Signal(signal) => format!("was killed by signal {signal}"),
                };
                let after = match *failed_dep {
                    Some(FailedDep::Failed(dep)) => format!(" after its dependency {} failed", self.quoted(dep)),
                    Some(FailedDep::Cycle(dep)) if dep == id => " after it asked for itself".to_string(),
                    Some(FailedDep::Cycle(dep)) => {
                        format!(" after it asked for {}, which would close the cycle", self.quoted(dep))
                    }
                    None => String::new(),
                };
                format!("cannot build {name}: {} {how}{after}", dofile.display())
            }
            Failure::Output { dofile, err } => {
                format!("cannot build {name}: {}: {err}", dofile.display())
            }
            Failure::Spawn { dofile, err } => {
                format!("cannot build {name}: cannot run {}: {err}", dofile.display())
            }
            Failure::Resolve(message) => {
                format!("cannot build {name}: searching its .do file failed: {message}")
            }
            Failure::Io { path, err } => format!("cannot build {name}: cannot read '{}': {err}", path.display()),
            Failure::Dependency(dep) => format!("cannot build {name}: its dependency {} failed", self.quoted(*dep)),
            Failure::Cycle(chain) => format!("dependency cycle: {}", self.chain(chain)),
        }
    }

    /// Formats a cycle, whose first and last nodes are the same, as
    /// `a -> b -> a`, starting at the node that the run asked for first.
    fn chain(&self, cycle: &[NodeId]) -> String {
        let ring = &cycle[..cycle.len().saturating_sub(1)];
        let first = (0..ring.len()).min_by_key(|&index| self.graph[ring[index]].priority.clone()).unwrap_or(0);
        let mut names: Vec<String> =
            ring[first..].iter().chain(&ring[..first]).map(|&id| self.display(id).display().to_string()).collect();
        if let Some(start) = names.first().cloned() {
            names.push(start);
        }
        names.join(" -> ")
    }

    /// Path of a node relative to the directory the run started in.
    fn display(&self, id: NodeId) -> PathBuf {
        paths::relative(&self.graph[id].abs, &self.config.startdir)
    }

    /// Name of a node in quotes, for messages.
    fn quoted(&self, id: NodeId) -> String {
        format!("'{}'", self.display(id).display())
    }

    fn report(&self, kind: EventKind, id: NodeId, message: String) {
        self.report_count(kind, id, message, 0);
    }

    fn report_count(&self, kind: EventKind, id: NodeId, message: String, count: u64) {
        self.reporter.report(&Event { kind, target: self.display(id), depth: self.graph[id].depth, message, count });
    }

    /// Reports the passing of time, for a status line.
    pub fn report_tick(&self) {
        let queued = (self.queue.len() + self.lock_waiters.len()) as u64;
        self.reporter.report(&Event {
            kind: EventKind::Tick,
            target: PathBuf::new(),
            depth: 0,
            message: String::new(),
            count: queued,
        });
    }

    /// Returns the next [`Priority`] position.
    fn position(&mut self) -> u32 {
        self.next_position += 1;
        self.next_position
    }

    /// Puts `items` in random order (Fisher-Yates with xorshift64*). The
    /// order only needs to vary between runs, not to resist prediction.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for last in (1..items.len()).rev() {
            let mut x = self.shuffle_state;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.shuffle_state = x;
            let random = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
            items.swap(last, (random % (last as u64 + 1)) as usize);
        }
    }

    /// Top of the tree.
    fn top(&self) -> &Path {
        &self.config.top
    }
}

#[cfg(test)]
mod tests;
