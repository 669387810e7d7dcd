//! The engine: one run of redors, from the requested targets to the exit
//! status.
//!
//! The engine owns an epoll set with four kinds of sources: the signalfd,
//! the listening socket, the connections of inner commands, and the pidfds
//! of running jobs. Its loop is: let the scheduler do all the work it can,
//! carry out the actions it produced (start processes, send replies), wait
//! for the next event, dispatch it, and repeat until the requested targets
//! are settled and no job runs.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::constants::exit;
use crate::listener::Listener;
use crate::protocol::{self, Reply};
use crate::report::{Event, EventKind, Reporter};
use crate::resolve::Resolver;
use crate::scheduler::{Action, ClientId, ExitStatus, JobId, Scheduler};
use crate::signals::Signals;
use crate::spawn::{self, Background, Child};
use crate::store::{Store, StoreError};
use crate::tokens::Tokens;

/// Settings of one run.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Top of the tree: the directory that holds `.redo/`.
    pub top: PathBuf,
    /// Directory the run started in; names are shown relative to it.
    pub startdir: PathBuf,
    /// The command line, recorded with the run.
    pub command: String,
    /// Directory of the inner commands, put first on the jobs' PATH.
    pub client_dir: Option<PathBuf>,
    /// Python interpreter of the front, passed to jobs in `REDORS_PYTHON`.
    pub python: Option<OsString>,
    /// Environment of the jobs, before redors adds its own variables.
    pub env: Vec<(OsString, OsString)>,
    /// Most scripts that run at once (`-j`); `None` when not given, to use
    /// the jobserver of a make that started redo, or else one.
    pub jobs: Option<usize>,
    /// Build everything that does not depend on a failure.
    pub keep_going: bool,
    /// Run scripts with `sh -x`.
    pub xtrace: bool,
    /// Run scripts with `sh -v`.
    pub verbose: bool,
    /// Report why each target is rebuilt.
    pub debug: bool,
    /// Wait for the processes a script left running before finishing its job.
    pub wait_background: bool,
    /// Report waits for targets that another run is building.
    pub debug_locks: bool,
    /// Capture each script's stderr, show it line by line and store it with
    /// its target; when off, scripts write to the engine's stderr directly.
    pub log: bool,
    /// How often to report the passing of time for a status line, in
    /// milliseconds; 0 for never.
    pub status_interval_ms: u64,
    /// Build the targets of each request in random order.
    pub shuffle: bool,
    /// Watch job processes with pidfds (otherwise with SIGCHLD).
    pub use_pidfd: bool,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every requested target is up to date.
    Success,
    /// These targets failed, relative to the start directory.
    Failed(Vec<PathBuf>),
    /// A signal stopped the run.
    Interrupted(i32),
}

impl RunOutcome {
    /// The exit status for the command that started the run.
    pub fn exit_status(&self) -> i32 {
        match self {
            RunOutcome::Success => exit::OK,
            RunOutcome::Failed(_) => exit::FAILED,
            RunOutcome::Interrupted(signal) => exit::SIGNAL_BASE + signal,
        }
    }
}

/// Why a run could not go on.
#[derive(Debug)]
pub enum EngineError {
    /// The state database cannot be used.
    State(StoreError),
    /// The engine could not set itself up.
    Setup { action: &'static str, err: io::Error },
    /// Nothing runs and nothing can progress: a bug in redors.
    Stalled,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::State(err) => err.fmt(f),
            EngineError::Setup { action, err } => write!(f, "cannot {action}: {err}"),
            EngineError::Stalled => {
                write!(f, "internal error: the build stopped making progress with work left; please report this")
            }
        }
    }
}

impl std::error::Error for EngineError {}

impl From<StoreError> for EngineError {
    fn from(err: StoreError) -> EngineError {
        EngineError::State(err)
    }
}

fn setup(action: &'static str) -> impl FnOnce(io::Error) -> EngineError {
    move |err| EngineError::Setup { action, err }
}

/// How long jobs get to exit after Ctrl-C before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often processes are polled when no descriptor tells of their exit.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Builds `targets` (relative to `config.startdir`): brings them up to date,
/// or rebuilds them when `force` is set, as `redo` does.
pub fn run(
    config: &Config,
    targets: &[PathBuf],
    force: bool,
    resolver: &dyn Resolver,
    reporter: &dyn Reporter,
) -> Result<RunOutcome, EngineError> {
    let use_pidfd = config.use_pidfd && spawn::pidfds_supported();
    let signals = Signals::block(!use_pidfd).map_err(setup("block signals"))?;
    let listener = Listener::create().map_err(setup("create the engine socket"))?;
    let epoll =
        Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|errno| setup("create an epoll set")(errno.into()))?;
    let store = Store::open_existing(&config.top)?;
    let makeflags = config.env.iter().find(|(name, _)| name == "MAKEFLAGS").map(|(_, value)| value.as_os_str());
    let plan = Tokens::plan(config.jobs, makeflags).map_err(setup("set up the jobserver"))?;
    if let Some(message) = plan.warning {
        reporter.report(&Event { kind: EventKind::Warning, target: PathBuf::new(), depth: 0, message, count: 0 });
    }
    let scheduler = Scheduler::new(config, resolver, reporter, listener.path().to_path_buf(), store, plan.tokens);
    let inotify = if config.log {
        Some(
            Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
                .map_err(|errno| setup("watch job logs")(errno.into()))?,
        )
    } else {
        None
    };
    let tick = (config.status_interval_ms > 0).then(|| Duration::from_millis(config.status_interval_ms));
    let mut engine = Engine {
        inotify,
        watches: HashMap::new(),
        tick,
        next_tick: tick.map(|interval| Instant::now() + interval),
        use_pidfd,
        wait_background: config.wait_background,
        scheduler,
        epoll,
        signals,
        listener,
        clients: HashMap::new(),
        next_client: 1,
        procs: HashMap::new(),
        programs: HashMap::new(),
    };
    engine.watch(engine.signals.fd(), Source::Signals)?;
    engine.watch(engine.listener.socket().as_fd(), Source::Listener)?;
    if let Some(fd) = engine.scheduler.tokens_fd() {
        engine.watch(fd, Source::Tokens)?;
    }
    if let Some(inotify) = &engine.inotify {
        engine.watch(inotify.as_fd(), Source::Output)?;
    }
    engine.scheduler.submit_top(targets, force);
    engine.main_loop()
}

/// What an epoll event is about, packed into its 64-bit data word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Signals,
    Listener,
    Client(ClientId),
    Job(JobId),
    Background(JobId),
    Tokens,
    Output,
}

const KIND_SHIFT: u32 = 56;
const ID_MASK: u64 = (1 << KIND_SHIFT) - 1;

impl Source {
    fn encode(self) -> u64 {
        let (kind, id) = match self {
            Source::Signals => (1, 0),
            Source::Listener => (2, 0),
            Source::Client(id) => (3, id),
            Source::Job(id) => (4, id),
            Source::Background(id) => (5, id),
            Source::Tokens => (6, 0),
            Source::Output => (7, 0),
        };
        (kind << KIND_SHIFT) | (id & ID_MASK)
    }

    fn decode(data: u64) -> Option<Source> {
        let id = data & ID_MASK;
        Some(match data >> KIND_SHIFT {
            1 => Source::Signals,
            2 => Source::Listener,
            3 => Source::Client(id),
            4 => Source::Job(id),
            5 => Source::Background(id),
            6 => Source::Tokens,
            7 => Source::Output,
            _ => return None,
        })
    }
}

/// A connection from an inner command: the request arrives, then the reply
/// leaves, then the connection closes.
struct Connection {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Whether the request was handed to the scheduler.
    dispatched: bool,
}

/// A job's process and what is known of its end.
struct Proc {
    child: Child,
    /// Exit status of the script, kept while waiting for background processes.
    exited: Option<ExitStatus>,
    /// pidfds of background processes being waited for.
    background: Vec<std::os::fd::OwnedFd>,
}

struct Engine<'a> {
    /// Watches the files that receive jobs' stderr; `None` without logs.
    inotify: Option<Inotify>,
    /// The job whose stderr each watch covers.
    watches: HashMap<WatchDescriptor, JobId>,
    /// How often to report time for the status line, if at all.
    tick: Option<Duration>,
    next_tick: Option<Instant>,
    use_pidfd: bool,
    wait_background: bool,
    scheduler: Scheduler<'a>,
    epoll: Epoll,
    signals: Signals,
    listener: Listener,
    clients: HashMap<ClientId, Connection>,
    next_client: ClientId,
    procs: HashMap<JobId, Proc>,
    /// Paths of the programs that started jobs, by name.
    programs: HashMap<OsString, PathBuf>,
}

impl Engine<'_> {
    fn watch(&self, fd: std::os::fd::BorrowedFd<'_>, source: Source) -> Result<(), EngineError> {
        self.epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, source.encode()))
            .map_err(|errno| setup("watch a descriptor")(errno.into()))
    }

    fn main_loop(&mut self) -> Result<RunOutcome, EngineError> {
        let mut events = vec![EpollEvent::empty(); 64];
        loop {
            self.settle();
            if let Some(err) = self.scheduler.take_fatal() {
                self.stop_jobs(Signal::SIGTERM);
                return Err(err.into());
            }
            if let Some(success) = self.scheduler.top_result() {
                if self.procs.is_empty() {
                    let outcome = match success && self.scheduler.failed_targets().is_empty() {
                        true => RunOutcome::Success,
                        false => RunOutcome::Failed(self.scheduler.failed_targets()),
                    };
                    self.scheduler.finish_run(outcome.exit_status());
                    return match self.scheduler.take_fatal() {
                        Some(err) => Err(err.into()),
                        None => Ok(outcome),
                    };
                }
            } else if self.procs.is_empty() && !self.scheduler.waiting_for_locks() {
                return Err(EngineError::Stalled);
            }

            let timeout = self.timeout();
            let count = match self.epoll.wait(&mut events, timeout) {
                Ok(count) => count,
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(setup("wait for events")(errno.into())),
            };
            for event in &events[..count] {
                match Source::decode(event.data()) {
                    Some(Source::Signals) => {
                        if let Some(signal) = self.take_signals() {
                            return Ok(self.interrupt(signal));
                        }
                    }
                    Some(Source::Listener) => self.accept_clients(),
                    Some(Source::Client(id)) => self.serve_client(id, event.events()),
                    Some(Source::Job(job)) => self.reap(job),
                    Some(Source::Background(job)) => self.check_background(job),
                    Some(Source::Tokens) => self.scheduler.collect_tokens(),
                    Some(Source::Output) => self.read_output(),
                    None => {}
                }
            }
            if self.needs_polling() {
                self.poll_processes();
            }
            if self.scheduler.waiting_for_locks() {
                self.scheduler.retry_locks();
            }
            if let (Some(interval), Some(next)) = (self.tick, self.next_tick) {
                if Instant::now() >= next {
                    self.scheduler.report_tick();
                    self.next_tick = Some(Instant::now() + interval);
                }
            }
        }
    }

    /// Lets the scheduler do all it can, starting the processes and sending
    /// the replies it asks for, until it waits for an event.
    fn settle(&mut self) {
        loop {
            self.scheduler.drain();
            match self.scheduler.next_action() {
                Some(Action::Spawn { job, spec }) => self.start(job, spec),
                Some(Action::Reply { client, reply }) => self.send_reply(client, &reply),
                None => return,
            }
        }
    }

    fn start(&mut self, job: JobId, spec: crate::scheduler::JobSpec) {
        let Some(program) = self.program_path(&spec) else {
            let name = spec.argv.first().map(|arg| arg.to_string_lossy().into_owned()).unwrap_or_default();
            let err = io::Error::new(io::ErrorKind::NotFound, format!("'{name}' not found on PATH"));
            return self.scheduler.spawn_failed(job, err);
        };
        match spawn::spawn(spec, &program, self.use_pidfd) {
            Ok(child) => {
                let mut child = child;
                if let Some(pidfd) = &child.pidfd {
                    let event = EpollEvent::new(EpollFlags::EPOLLIN, Source::Job(job).encode());
                    if self.epoll.add(pidfd.as_fd(), event).is_err() {
                        // Poll this process instead.
                        child.pidfd = None;
                    }
                }
                self.scheduler.job_started(job, child.pid.as_raw() as u32);
                if let (Some(inotify), Some(path)) = (&self.inotify, self.scheduler.log_path(job)) {
                    if let Ok(watch) = inotify.add_watch(path, AddWatchFlags::IN_MODIFY) {
                        self.watches.insert(watch, job);
                    }
                }
                self.procs.insert(job, Proc { child, exited: None, background: Vec::new() });
            }
            Err(err) => self.scheduler.spawn_failed(job, err),
        }
    }

    /// How long to wait for events: forever, unless something must be
    /// polled or a status tick is due.
    fn timeout(&self) -> EpollTimeout {
        let mut wait: Option<Duration> = None;
        if self.needs_polling() || self.scheduler.waiting_for_locks() {
            wait = Some(POLL_INTERVAL);
        }
        if let Some(next) = self.next_tick {
            let until_tick = next.saturating_duration_since(Instant::now());
            wait = Some(wait.map_or(until_tick, |wait| wait.min(until_tick)));
        }
        match wait {
            Some(wait) => EpollTimeout::try_from(wait.max(Duration::from_millis(1))).unwrap_or(EpollTimeout::NONE),
            None => EpollTimeout::NONE,
        }
    }

    /// Shows what jobs wrote to stderr, after the inotify watches fired.
    fn read_output(&mut self) {
        let Some(inotify) = &self.inotify else { return };
        let mut jobs: Vec<JobId> = Vec::new();
        while let Ok(events) = inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for event in events {
                if let Some(&job) = self.watches.get(&event.wd) {
                    if !jobs.contains(&job) {
                        jobs.push(job);
                    }
                }
            }
        }
        for job in jobs {
            self.scheduler.job_output(job);
        }
    }

    /// Finds the program of a job on the job's PATH, once per name and run.
    fn program_path(&mut self, spec: &crate::scheduler::JobSpec) -> Option<PathBuf> {
        let name = spec.argv.first()?;
        if let Some(path) = self.programs.get(name) {
            return Some(path.clone());
        }
        let path_value = spec.env.iter().find(|(key, _)| key == "PATH").map(|(_, value)| value.as_os_str());
        let found = spawn::find_program(name, path_value.unwrap_or_default())?;
        if found.is_absolute() {
            self.programs.insert(name.clone(), found.clone());
        }
        Some(found)
    }

    /// Tells whether some process must be polled because no descriptor
    /// reports its exit.
    fn needs_polling(&self) -> bool {
        self.procs.values().any(|proc| {
            (proc.exited.is_none() && proc.child.pidfd.is_none())
                || (proc.exited.is_some() && proc.background.is_empty())
        })
    }

    fn poll_processes(&mut self) {
        let jobs: Vec<JobId> = self.procs.keys().copied().collect();
        for job in jobs {
            match self.procs.get(&job).map(|proc| proc.exited.is_some()) {
                Some(false) => self.reap(job),
                Some(true) => self.check_background(job),
                None => {}
            }
        }
    }

    /// Reaps a job's process if it exited, then finishes the job or starts
    /// waiting for its background processes.
    fn reap(&mut self, job: JobId) {
        let Some(proc) = self.procs.get(&job) else {
            return;
        };
        if proc.exited.is_some() {
            return;
        }
        let status = match spawn::try_wait(&proc.child) {
            Ok(Some(status)) => status,
            Ok(None) => return,
            // The process is gone in a way waitid cannot describe.
            Err(_) => ExitStatus::Code(exit::FAILED),
        };
        if let Some(pidfd) = &proc.child.pidfd {
            let _ = self.epoll.delete(pidfd.as_fd());
        }
        let pgid = proc.child.pid;
        let members = spawn::group_members(pgid);
        if members.is_empty() {
            self.procs.remove(&job);
            return self.job_exited(job, status, &[]);
        }
        if !self.wait_background {
            self.procs.remove(&job);
            return self.job_exited(job, status, &members);
        }
        if let Some(proc) = self.procs.get_mut(&job) {
            proc.exited = Some(status);
        }
        self.watch_background(job, &members);
    }

    fn watch_background(&mut self, job: JobId, members: &[Background]) {
        let Some(proc) = self.procs.get_mut(&job) else {
            return;
        };
        proc.background.clear();
        if !self.use_pidfd {
            return;
        }
        for member in members {
            if let Ok(pidfd) = spawn::pidfd_open(Pid::from_raw(member.pid)) {
                let event = EpollEvent::new(EpollFlags::EPOLLIN, Source::Background(job).encode());
                if self.epoll.add(pidfd.as_fd(), event).is_ok() {
                    proc.background.push(pidfd);
                }
            }
        }
    }

    /// Hands a job's end to the scheduler and stops watching its stderr.
    fn job_exited(&mut self, job: JobId, status: ExitStatus, background: &[Background]) {
        self.scheduler.job_exited(job, status, background);
        self.watches.retain(|_, watched| *watched != job);
    }

    /// Finishes a job whose background processes have all exited.
    fn check_background(&mut self, job: JobId) {
        let Some(proc) = self.procs.get_mut(&job) else {
            return;
        };
        let Some(status) = proc.exited else { return };
        let members = spawn::group_members(proc.child.pid);
        if !members.is_empty() {
            let still_watched = proc.background.len();
            if still_watched != members.len() {
                for pidfd in proc.background.drain(..) {
                    let _ = self.epoll.delete(pidfd.as_fd());
                }
                self.watch_background(job, &members);
            }
            return;
        }
        if let Some(proc) = self.procs.remove(&job) {
            for pidfd in &proc.background {
                let _ = self.epoll.delete(pidfd.as_fd());
            }
        }
        self.job_exited(job, status, &[]);
    }

    fn take_signals(&mut self) -> Option<Signal> {
        let mut stop = None;
        for signal in self.signals.take() {
            match signal {
                Signal::SIGCHLD => self.poll_processes(),
                other => stop = Some(other),
            }
        }
        stop
    }

    fn accept_clients(&mut self) {
        loop {
            match self.listener.accept() {
                Ok(Some(stream)) => {
                    let id = self.next_client;
                    self.next_client += 1;
                    let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
                    if self.epoll.add(stream.as_fd(), EpollEvent::new(flags, Source::Client(id).encode())).is_ok() {
                        let connection =
                            Connection { stream, input: Vec::new(), output: Vec::new(), dispatched: false };
                        self.clients.insert(id, connection);
                    }
                }
                Ok(None) | Err(_) => return,
            }
        }
    }

    fn serve_client(&mut self, id: ClientId, flags: EpollFlags) {
        if flags.contains(EpollFlags::EPOLLOUT) {
            self.flush_client(id);
        }
        if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLERR)
        {
            self.read_client(id);
        }
    }

    fn read_client(&mut self, id: ClientId) {
        let Some(connection) = self.clients.get_mut(&id) else {
            return;
        };
        let mut closed = false;
        let mut chunk = [0u8; 8192];
        loop {
            match connection.stream.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(count) => connection.input.extend_from_slice(&chunk[..count]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if !connection.dispatched {
            match protocol::frame_len(&connection.input) {
                Ok(Some(len)) if connection.input.len() >= len => {
                    connection.dispatched = true;
                    match protocol::Request::decode(&connection.input[..len]) {
                        Ok(request) => self.scheduler.request(id, request),
                        Err(err) => self.send_reply(id, &Reply::error(exit::FAILED, format!("redo: error: {err}"))),
                    }
                    return;
                }
                Ok(_) => {}
                Err(err) => {
                    connection.dispatched = true;
                    return self.send_reply(id, &Reply::error(exit::FAILED, format!("redo: error: {err}")));
                }
            }
        }
        if closed {
            self.drop_client(id);
        }
    }

    fn send_reply(&mut self, id: ClientId, reply: &Reply) {
        let Some(connection) = self.clients.get_mut(&id) else {
            return;
        };
        connection.output = reply.encode();
        self.flush_client(id);
    }

    fn flush_client(&mut self, id: ClientId) {
        let Some(connection) = self.clients.get_mut(&id) else {
            return;
        };
        while !connection.output.is_empty() {
            match connection.stream.write(&connection.output) {
                Ok(count) => {
                    connection.output.drain(..count);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    let flags = EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP;
                    let mut event = EpollEvent::new(flags, Source::Client(id).encode());
                    let _ = self.epoll.modify(connection.stream.as_fd(), &mut event);
                    return;
                }
                Err(_) => break,
            }
        }
        self.close_client(id);
    }

    /// Forgets a connection whose peer went away before its reply.
    fn drop_client(&mut self, id: ClientId) {
        self.scheduler.client_gone(id);
        self.close_client(id);
    }

    fn close_client(&mut self, id: ClientId) {
        if let Some(connection) = self.clients.remove(&id) {
            let _ = self.epoll.delete(connection.stream.as_fd());
        }
    }

    /// Stops every job after a signal and ends the run.
    fn interrupt(&mut self, signal: Signal) -> RunOutcome {
        let forwarded = if signal == Signal::SIGHUP { Signal::SIGTERM } else { signal };
        self.stop_jobs(forwarded);
        self.scheduler.finish_run(exit::SIGNAL_BASE + signal as i32);
        RunOutcome::Interrupted(signal as i32)
    }

    /// Sends `signal` to every job's process group and waits for the
    /// scripts to exit, killing them after a grace period or at once on a
    /// second signal. Then stops what is left in their groups: shells start
    /// background commands with SIGINT ignored, so those get SIGTERM, and
    /// SIGKILL if they outlive the grace period too. Finally removes the
    /// jobs' temporary files.
    fn stop_jobs(&mut self, signal: Signal) {
        let groups: Vec<Pid> = self.procs.values().map(|proc| proc.child.pid).collect();
        for &group in &groups {
            spawn::signal_group(group, signal);
        }
        let deadline = Instant::now() + STOP_GRACE;
        let mut killed = false;
        while !self.procs.is_empty() {
            self.procs.retain(|_, proc| proc.exited.is_none() && matches!(spawn::try_wait(&proc.child), Ok(None)));
            if self.procs.is_empty() {
                break;
            }
            let second_signal = !self.signals.take().iter().all(|&signal| signal == Signal::SIGCHLD);
            if !killed && (second_signal || Instant::now() >= deadline) {
                for proc in self.procs.values() {
                    spawn::signal_group(proc.child.pid, Signal::SIGKILL);
                }
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop_leftovers(&groups, killed);
        self.scheduler.abandon_jobs();
    }

    /// Stops the processes still in the given groups after their scripts
    /// exited: SIGTERM first (SIGKILL at once when `kill` is set), then
    /// SIGKILL after the grace period.
    fn stop_leftovers(&mut self, groups: &[Pid], kill: bool) {
        let first = if kill { Signal::SIGKILL } else { Signal::SIGTERM };
        let mut remaining: Vec<Pid> =
            groups.iter().copied().filter(|&group| !spawn::group_members(group).is_empty()).collect();
        for &group in &remaining {
            spawn::signal_group(group, first);
        }
        let deadline = Instant::now() + STOP_GRACE;
        // A process stuck in the kernel may survive even SIGKILL for a while;
        // redo stops waiting for it one more grace period later.
        let give_up = deadline + STOP_GRACE;
        let mut killed = kill;
        while !remaining.is_empty() && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(10));
            remaining.retain(|&group| !spawn::group_members(group).is_empty());
            let second_signal = !self.signals.take().iter().all(|&signal| signal == Signal::SIGCHLD);
            if !killed && (second_signal || Instant::now() >= deadline) {
                for &group in &remaining {
                    spawn::signal_group(group, Signal::SIGKILL);
                }
                killed = true;
            }
        }
    }
}
