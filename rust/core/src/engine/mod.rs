//! The engine: one run of redors, from the requested targets to the exit
//! status.
//!
//! The engine owns an epoll set. It watches the signalfd, the listening
//! socket, the connections of inner commands, and the pidfds of running jobs
//! and, when redo waits for them, of the processes they left running. It
//! also watches the inotify descriptor that follows jobs' stderr, the
//! eventfd through which jobserver tokens arrive, and the one through which
//! the spawning thread reports started jobs.
//!
//! Its loop lets the scheduler do all the work it can and carries out the
//! actions it produced (start processes, send replies). Then it waits for
//! the next event and dispatches it. It ends when the requested targets are
//! settled and no job runs.

mod clients;
mod processes;
mod spawner;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::inotify::{InitFlags, Inotify, WatchDescriptor};
use nix::sys::signal::Signal;

use crate::constants::exit;
use crate::listener::Listener;
use crate::report::{Event, EventKind, Reporter};
use crate::resolve::Resolver;
use crate::scheduler::{Action, ClientId, JobId, Scheduler};
use crate::signals::Signals;
use crate::spawn;
use crate::store::{Store, StoreError};
use crate::tokens::Tokens;

use spawner::Spawner;

/// Settings of one run.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Top of the tree: the directory that contains `.redo/`.
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
    /// Maximum number of scripts that run at once (`-j`). `None` when not
    /// given: the jobserver of a make that started redo decides, or else one.
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

/// Outcome of a run.
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
    /// Returns the exit status for the command that started the run.
    pub fn exit_status(&self) -> i32 {
        match self {
            RunOutcome::Success => exit::OK,
            RunOutcome::Failed(_) => exit::FAILED,
            RunOutcome::Interrupted(signal) => exit::SIGNAL_BASE + signal,
        }
    }
}

/// Error that stopped a run.
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

/// How often processes are polled when no descriptor reports their exit.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Raises the soft limit on open descriptors to the hard one. Each script
/// that waits for a dependency keeps about four of the engine's open (its
/// two capture files, its pidfd, its connection), so a chain of 250 nested
/// targets would pass the usual soft limit of 1024.
fn raise_descriptor_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Builds `targets` (relative to `config.startdir`): brings them up to date,
/// or rebuilds them when `force` is set, as `redo` does.
pub fn run(
    config: &Config,
    targets: &[PathBuf],
    force: bool,
    resolver: &dyn Resolver,
    reporter: &dyn Reporter,
) -> Result<RunOutcome, EngineError> {
    Tokens::adopt_inherited();
    raise_descriptor_limit();
    // The descriptors the loop watches.
    let use_pidfd = config.use_pidfd && spawn::pidfds_supported();
    let signals = Signals::block(!use_pidfd).map_err(setup("block signals"))?;
    // Started after the signals are blocked: the thread inherits the mask.
    let spawner = Spawner::start().map_err(setup("start the thread that starts jobs"))?;
    let listener = Listener::create().map_err(setup("create the engine socket"))?;
    let epoll =
        Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|errno| setup("create an epoll set")(errno.into()))?;
    let inotify = if config.log {
        Some(
            Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
                .map_err(|errno| setup("watch job logs")(errno.into()))?,
        )
    } else {
        None
    };

    // The state, the job tokens and the scheduler.
    let store = Store::open_existing(&config.top)?;
    let makeflags = config.env.iter().find(|(name, _)| name == "MAKEFLAGS").map(|(_, value)| value.as_os_str());
    let plan = Tokens::plan(config.jobs, makeflags).map_err(setup("set up the jobserver"))?;
    if let Some(message) = plan.warning {
        reporter.report(&Event { kind: EventKind::Warning, target: PathBuf::new(), depth: 0, message, count: 0 });
    }
    let scheduler = Scheduler::new(config, resolver, reporter, listener.path().to_path_buf(), store, plan.tokens);

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
        spawner,
        programs: HashMap::new(),
    };

    engine.watch(engine.signals.fd(), Source::Signals)?;
    engine.watch(engine.listener.socket().as_fd(), Source::Listener)?;
    engine.watch(engine.spawner.wake_fd(), Source::Spawned)?;
    if let Some(fd) = engine.scheduler.tokens_fd() {
        engine.watch(fd, Source::Tokens)?;
    }
    if let Some(inotify) = &engine.inotify {
        engine.watch(inotify.as_fd(), Source::Output)?;
    }
    engine.scheduler.submit_top(targets, force);
    engine.main_loop()
}

/// Source of an epoll event, packed into its 64-bit data word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Signals,
    Listener,
    Client(ClientId),
    Job(JobId),
    Background(JobId),
    Tokens,
    Output,
    Spawned,
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
            Source::Spawned => (8, 0),
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
            8 => Source::Spawned,
            _ => return None,
        })
    }
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
    clients: HashMap<ClientId, clients::Connection>,
    next_client: ClientId,
    procs: HashMap<JobId, processes::Proc>,
    spawner: Spawner,
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
            let no_process = self.procs.is_empty() && self.spawner.idle();
            if let Some(success) = self.scheduler.top_result() {
                if no_process {
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
            } else if no_process && !self.scheduler.waiting_for_locks() {
                return Err(EngineError::Stalled);
            }

            let timeout = self.timeout();
            self.scheduler.end_reads();
            let count = match self.epoll.wait(&mut events, timeout) {
                Ok(count) => count,
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(setup("wait for events")(errno.into())),
            };
            self.collect_started();
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
                    Some(Source::Spawned) => self.collect_started(),
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
    /// the replies it produces, until it waits for an event.
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

    /// How long to wait for events: forever, unless something must be
    /// polled or a status tick is due.
    fn timeout(&self) -> EpollTimeout {
        let mut wait: Option<Duration> = None;
        if self.needs_polling() || self.scheduler.waiting_for_locks() {
            wait = Some(POLL_INTERVAL);
        }
        if let Some(due) = self.scheduler.commit_due() {
            wait = Some(wait.map_or(due, |wait| wait.min(due)));
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
            self.wait_started(job);
            self.scheduler.job_output(job);
        }
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

    /// Stops every job after a signal and ends the run.
    fn interrupt(&mut self, signal: Signal) -> RunOutcome {
        let forwarded = if signal == Signal::SIGHUP { Signal::SIGTERM } else { signal };
        self.stop_jobs(forwarded);
        self.scheduler.finish_run(exit::SIGNAL_BASE + signal as i32);
        RunOutcome::Interrupted(signal as i32)
    }
}
