//! Requests: what the top level and the inner commands ask for.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::constants::exit;
use crate::paths;
use crate::protocol::{self, Command, Reply};
use crate::stamp::{Hash, Stamp};
use crate::store::DepKind;

use super::{Action, ClientId, EventKind, FailedDep, JobId, NodeId, Outcome, RequestId, Scheduler, State, Waiter};

/// Who asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// The command that started the run.
    Top,
    /// An inner command of a job; `client` is 0 once its connection is gone.
    Job { job: JobId, client: ClientId },
}

/// A request to bring targets up to date (or to build them, when forced).
pub(super) struct Request {
    origin: Origin,
    targets: Vec<NodeId>,
    /// Targets not settled yet.
    pending: usize,
    failed: bool,
}

/// The pending requests of a run.
#[derive(Default)]
pub(super) struct Requests {
    slots: Vec<Option<Request>>,
    free: Vec<RequestId>,
    /// Outcome of the top-level request once it finished: true on success.
    top_result: Option<bool>,
}

impl Requests {
    fn insert(&mut self, request: Request) -> RequestId {
        match self.free.pop() {
            Some(id) => {
                self.slots[id] = Some(request);
                id
            }
            None => {
                self.slots.push(Some(request));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, id: RequestId) -> Option<Request> {
        let request = self.slots.get_mut(id)?.take();
        if request.is_some() {
            self.free.push(id);
        }
        request
    }

    fn get(&self, id: RequestId) -> Option<&Request> {
        self.slots.get(id).and_then(Option::as_ref)
    }

    fn get_mut(&mut self, id: RequestId) -> Option<&mut Request> {
        self.slots.get_mut(id).and_then(Option::as_mut)
    }
}

impl Scheduler<'_> {
    /// Tells whether a script waits for `id` alone: settling it ends the
    /// script's wait.
    pub(super) fn resumes_a_script(&self, id: NodeId) -> bool {
        self.graph[id].waiters.iter().any(|waiter| match waiter {
            Waiter::Request(request) => self
                .requests
                .get(*request)
                .is_some_and(|entry| entry.pending == 1 && matches!(entry.origin, Origin::Job { .. })),
            Waiter::Check(_) => false,
        })
    }

    /// Submits the targets named on the command line, relative to the start
    /// directory. `force` builds them even if they are up to date.
    pub fn submit_top(&mut self, targets: &[PathBuf], force: bool) {
        let ids: Vec<NodeId> = targets
            .iter()
            .map(|target| {
                let abs = paths::absolute(&self.config.startdir, target);
                self.graph.intern(&self.config.top, &abs)
            })
            .collect();
        self.submit(Origin::Top, ids, None, force);
    }

    /// Returns whether the top-level request succeeded, once it finished.
    pub fn top_result(&self) -> Option<bool> {
        self.requests.top_result
    }

    fn submit(&mut self, origin: Origin, mut ids: Vec<NodeId>, parent: Option<NodeId>, force: bool) {
        if self.config.shuffle {
            self.shuffle(&mut ids);
        }
        let pending = ids.len();
        let request = self.requests.insert(Request { origin, targets: ids.clone(), pending, failed: false });
        if let Origin::Job { job, .. } = origin {
            if let Some(job) = self.jobs.get_mut(&job) {
                job.outstanding.push(request);
                if let Some(token) = job.token.take() {
                    self.tokens.put(token);
                }
            }
        }
        if pending == 0 {
            return self.complete(request);
        }
        for id in ids {
            self.launch(request, id, parent, force);
        }
    }

    /// Brings one target of a request up to date, or waits for it.
    fn launch(&mut self, request: RequestId, id: NodeId, parent: Option<NodeId>, force: bool) {
        let (priority, depth) = match parent {
            Some(parent) => (self.graph[parent].priority.clone(), self.graph[parent].depth + 1),
            None => (Rc::from([]), 0),
        };
        let position = self.position();
        self.graph.place(id, &priority, position, depth);
        let node = &mut self.graph[id];
        if node.requested_by.is_none() {
            node.requested_by = parent;
        }
        if force && !node.built && node.outcome() == Some(Outcome::Ok) {
            node.state = State::Idle;
        }
        match self.graph[id].state {
            State::Done(outcome) => self.target_settled(request, id, outcome),
            State::Idle => {
                self.graph[id].waiters.push(Waiter::Request(request));
                self.visit(id, force);
            }
            _ => {
                if let Some(parent) = parent {
                    let cycle = if id == parent {
                        Some(vec![parent, parent])
                    } else {
                        self.find_wait_path(id, parent).map(|path| {
                            let mut cycle = vec![parent];
                            cycle.extend(path);
                            cycle
                        })
                    };
                    if let Some(cycle) = cycle {
                        let message = if id == parent {
                            format!("cannot build {}: it depends on itself", self.quoted(id))
                        } else {
                            format!("dependency cycle: {}", self.chain(&cycle))
                        };
                        self.report(EventKind::Error, parent, message);
                        return self.reject_cyclic_target(request, id);
                    }
                }
                let node = &mut self.graph[id];
                node.waiters.push(Waiter::Request(request));
                node.force_pending |= force;
            }
        }
    }

    /// Fails one target of a request because asking for it closed a
    /// dependency cycle: the target itself has not failed.
    fn reject_cyclic_target(&mut self, request: RequestId, id: NodeId) {
        if let Some(Origin::Job { job, .. }) = self.requests.get(request).map(|entry| entry.origin) {
            if let Some(job) = self.jobs.get_mut(&job) {
                job.failed_deps.push(FailedDep::Cycle(id));
            }
        }
        self.target_settled(request, id, Outcome::Failed);
    }

    /// Counts one target of a request as settled.
    pub(super) fn target_settled(&mut self, request: RequestId, id: NodeId, outcome: Outcome) {
        if outcome == Outcome::Missing && !self.graph[id].reported_missing {
            self.graph[id].reported_missing = true;
            self.failed.push(id);
            self.reported_failures.insert(id);
            let message = format!(
                "cannot build {}: it does not exist and no .do file builds it \
                 (redo-whichdo lists the .do files that were looked for)",
                self.quoted(id)
            );
            self.report(EventKind::Error, id, message);
        }
        let Some(entry) = self.requests.get_mut(request) else {
            return;
        };
        if outcome != Outcome::Ok {
            entry.failed = true;
            if let Origin::Job { job, .. } = entry.origin {
                if let Some(job) = self.jobs.get_mut(&job) {
                    if !job.failed_deps.contains(&FailedDep::Cycle(id)) {
                        job.failed_deps.push(FailedDep::Failed(id));
                    }
                }
            }
            if !self.config.keep_going {
                self.stopping = true;
            }
        }
        let entry = self.requests.get_mut(request).expect("request exists");
        entry.pending -= 1;
        if entry.pending == 0 {
            self.complete(request);
        }
    }

    /// Replies to a request whose targets all settled.
    fn complete(&mut self, request: RequestId) {
        let Some(entry) = self.requests.remove(request) else {
            return;
        };
        let status = if entry.failed { exit::FAILED } else { exit::OK };
        let Origin::Job { job, client } = entry.origin else {
            self.requests.top_result = Some(!entry.failed);
            return;
        };
        let reply = Reply::status(status);
        if let Some(running) = self.jobs.get_mut(&job) {
            running.outstanding.retain(|&other| other != request);
            if running.outstanding.is_empty() && running.token.is_none() && !self.stopping {
                match self.tokens.take() {
                    Some(token) => running.token = Some(token),
                    None => {
                        // The script goes on only once it has a token again.
                        self.resume.push_back((job, client, reply));
                        return;
                    }
                }
            }
        }
        if client != 0 {
            self.actions.push_back(Action::Reply { client, reply });
        }
    }

    /// Handles a request from an inner command.
    pub fn request(&mut self, client: ClientId, request: protocol::Request) {
        // What the script wrote before this call must be shown before the
        // builds the call starts, whatever order the engine's events came in.
        self.read_output(request.job, false);
        let Some(parent) = self.jobs.get(&request.job).map(|job| job.node) else {
            let reply = Reply::error(
                exit::FAILED,
                "redo: error: the .do script that ran this command has already finished; \
                 redo-ifchange and its kin work only while their script runs",
            );
            return self.actions.push_back(Action::Reply { client, reply });
        };
        let reply = match request.command {
            Command::Ifchange | Command::Redo => {
                let force = request.command == Command::Redo;
                let ids = self.intern_all(&request.cwd, &request.args);
                if !force {
                    if let Some(job) = self.jobs.get_mut(&request.job) {
                        let deps = ids.iter().filter(|&&id| id != parent);
                        job.deps.extend(deps.map(|&id| (id, DepKind::IfChange)));
                    }
                }
                let origin = Origin::Job { job: request.job, client };
                return self.submit(origin, ids, Some(parent), force);
            }
            Command::Ifcreate => self.ifcreate(request.job, &request.cwd, &request.args),
            Command::Always => {
                if let Some(job) = self.jobs.get_mut(&request.job) {
                    job.always = true;
                }
                Reply::status(exit::OK)
            }
            Command::Stamp => match request.args.first().map(|arg| Hash::try_from(arg.as_bytes())) {
                Some(Ok(hash)) => {
                    if let Some(job) = self.jobs.get_mut(&request.job) {
                        job.stamp = Some(hash);
                    }
                    Reply::status(exit::OK)
                }
                _ => Reply::error(exit::FAILED, "redo-stamp: error: invalid stamp in the request"),
            },
            Command::Whichdo => self.whichdo(&request.cwd, &request.args),
            Command::FlushCache => {
                self.flush_checked();
                Reply::status(exit::OK)
            }
        };
        self.actions.push_back(Action::Reply { client, reply });
    }

    fn intern_all(&mut self, cwd: &Path, args: &[std::ffi::OsString]) -> Vec<NodeId> {
        args.iter()
            .map(|arg| {
                let abs = paths::absolute(cwd, Path::new(arg));
                self.graph.intern(&self.config.top, &abs)
            })
            .collect()
    }

    fn ifcreate(&mut self, job: JobId, cwd: &Path, args: &[std::ffi::OsString]) -> Reply {
        let mut ids = Vec::new();
        for arg in args {
            let abs = paths::absolute(cwd, Path::new(arg));
            match Stamp::read(&abs) {
                Ok(stamp) if stamp.exists() => {
                    return Reply::error(
                        exit::FAILED,
                        format!(
                            "redo-ifcreate: error: '{}' already exists; redo-ifcreate declares a \
                             dependency on a file that does not exist yet (use redo-ifchange for a \
                             file that exists)",
                            arg.to_string_lossy()
                        ),
                    );
                }
                Ok(_) => ids.push(self.graph.intern(&self.config.top, &abs)),
                Err(err) => {
                    return Reply::error(
                        exit::FAILED,
                        format!("redo-ifcreate: error: cannot read '{}': {err}", arg.to_string_lossy()),
                    );
                }
            }
        }
        if let Some(job) = self.jobs.get_mut(&job) {
            job.deps.extend(ids.into_iter().map(|id| (id, DepKind::IfCreate)));
        }
        Reply::status(exit::OK)
    }

    fn whichdo(&self, cwd: &Path, args: &[std::ffi::OsString]) -> Reply {
        let [target] = args else {
            return Reply::error(exit::USAGE, "redo-whichdo: error: expected exactly one target");
        };
        let abs = paths::absolute(cwd, Path::new(target));
        match self.resolver.resolve(&abs) {
            Ok(resolution) => {
                let mut stdout = Vec::new();
                let found = resolution.found.as_ref().map(|found| found.dofile.clone());
                for candidate in resolution.missing.iter().chain(found.as_ref()) {
                    stdout.extend_from_slice(paths::relative(candidate, cwd).as_os_str().as_bytes());
                    stdout.push(b'\n');
                }
                let status = if found.is_some() { exit::OK } else { exit::FAILED };
                Reply { status, stdout, stderr: Vec::new() }
            }
            Err(message) => Reply::error(exit::FAILED, format!("redo-whichdo: error: {message}")),
        }
    }

    /// Forgets which nodes this run settled, so that later requests check
    /// them again. Nodes in progress are left alone.
    fn flush_checked(&mut self) {
        for id in self.graph.ids() {
            let node = &mut self.graph[id];
            if matches!(node.state, State::Done(_)) {
                node.state = State::Idle;
                node.built = false;
                node.reported_missing = false;
            }
        }
    }

    /// Drops the replies of requests whose inner command went away.
    pub fn client_gone(&mut self, client: ClientId) {
        let mut orphaned = Vec::new();
        for (id, slot) in self.requests.slots.iter_mut().enumerate() {
            if let Some(Request { origin: Origin::Job { job, client: owner }, .. }) = slot {
                if *owner == client {
                    *owner = 0;
                    orphaned.push((id, *job));
                }
            }
        }
        for (request, job) in orphaned {
            if let Some(running) = self.jobs.get_mut(&job) {
                running.outstanding.retain(|&other| other != request);
            }
        }
    }

    /// Finds a chain of waits from `from` to `to`, both included.
    pub(super) fn find_wait_path(&self, from: NodeId, to: NodeId) -> Option<Vec<NodeId>> {
        let mut came_from: HashMap<NodeId, NodeId> = HashMap::new();
        let mut stack = vec![from];
        came_from.insert(from, from);
        while let Some(id) = stack.pop() {
            if id == to {
                let mut path = vec![id];
                let mut at = id;
                while at != from {
                    at = came_from[&at];
                    path.push(at);
                }
                path.reverse();
                return Some(path);
            }
            for next in self.waits_on(id) {
                if let std::collections::hash_map::Entry::Vacant(entry) = came_from.entry(next) {
                    entry.insert(id);
                    stack.push(next);
                }
            }
        }
        None
    }

    /// Nodes that `id` waits for before it can go on.
    fn waits_on(&self, id: NodeId) -> Vec<NodeId> {
        match &self.graph[id].state {
            State::Checking { waiting_on: Some(dep), .. } => vec![*dep],
            State::Running(job) => self.jobs.get(job).map_or_else(Vec::new, |job| {
                job.outstanding
                    .iter()
                    .filter_map(|&request| self.requests.get(request))
                    .flat_map(|request| request.targets.iter().copied())
                    .filter(|&target| self.graph[target].outcome().is_none())
                    .collect()
            }),
            _ => Vec::new(),
        }
    }
}
