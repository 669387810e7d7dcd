//! The processes of jobs: starting them, noticing their end (through a
//! pidfd, or by polling without one), waiting for the processes they left
//! running when asked to, and stopping them all on a signal.

use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::inotify::AddWatchFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::constants::exit;
use crate::scheduler::{ExitStatus, JobId, JobSpec};
use crate::spawn::{self, Background, Child};

use super::spawner::Started;
use super::{Engine, STOP_GRACE, Source};

/// A job's process and what is known of its end.
pub(super) struct Proc {
    child: Child,
    /// Exit status of the script, kept while waiting for background processes.
    exited: Option<ExitStatus>,
    /// pidfds of background processes being waited for.
    background: Vec<std::os::fd::OwnedFd>,
}

impl Engine<'_> {
    pub(super) fn start(&mut self, job: JobId, spec: JobSpec) {
        let Some(program) = self.program_path(&spec) else {
            let name = spec.argv.first().map(|arg| arg.to_string_lossy().into_owned()).unwrap_or_default();
            let err = io::Error::new(io::ErrorKind::NotFound, format!("'{name}' not found on PATH"));
            return self.scheduler.spawn_failed(job, err);
        };
        // Watch the stderr capture before the script can write to it.
        if let (Some(inotify), Some(path)) = (&self.inotify, self.scheduler.log_path(job)) {
            if let Ok(watch) = inotify.add_watch(path, AddWatchFlags::IN_MODIFY) {
                self.watches.insert(watch, job);
            }
        }
        if let Some(started) = self.spawner.submit(job, spec, program, self.use_pidfd) {
            self.started(started);
        }
    }

    /// Takes note of the jobs that the spawning thread started.
    pub(super) fn collect_started(&mut self) {
        for started in self.spawner.take() {
            self.started(started);
        }
    }

    /// Makes sure that a job's start is known before something it did is
    /// handled: its process can write or call redo-ifchange before the
    /// spawning thread reports it, and its build line must come first.
    pub(super) fn wait_started(&mut self, job: JobId) {
        if self.spawner.is_starting(job) {
            for started in self.spawner.take_all() {
                self.started(started);
            }
        }
    }

    /// Takes note of a started job (or of one that could not start).
    pub(super) fn started(&mut self, (job, result): Started) {
        match result {
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
                self.procs.insert(job, Proc { child, exited: None, background: Vec::new() });
            }
            Err(err) => {
                self.watches.retain(|_, watched| *watched != job);
                self.scheduler.spawn_failed(job, err);
            }
        }
    }

    /// Finds the program of a job on the job's PATH, once per name and run.
    fn program_path(&mut self, spec: &JobSpec) -> Option<PathBuf> {
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
    pub(super) fn needs_polling(&self) -> bool {
        self.procs.values().any(|proc| {
            (proc.exited.is_none() && proc.child.pidfd.is_none())
                || (proc.exited.is_some() && proc.background.is_empty())
        })
    }

    pub(super) fn poll_processes(&mut self) {
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
    pub(super) fn reap(&mut self, job: JobId) {
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
        let members = if spawn::group_members(pgid).is_empty() {
            Vec::new()
        } else {
            if !self.wait_background {
                // What the script wrote to stdout ends here, although the
                // processes it left may write more.
                self.scheduler.freeze_stdout(job);
            }
            survivors(pgid)
        };
        if members.is_empty() || !self.wait_background {
            self.procs.remove(&job);
            // Start the next job first: installing and recording this one's
            // outputs can happen while the next script runs.
            self.scheduler.release_job(job, status);
            self.settle();
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
    pub(super) fn check_background(&mut self, job: JobId) {
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

    /// Sends `signal` to every job's process group and waits for the
    /// scripts to exit, killing them after a grace period or at once on a
    /// second signal. Then stops what is left in their groups: shells start
    /// background commands with SIGINT ignored, so those get SIGTERM, and
    /// SIGKILL if they outlive the grace period too. Finally removes the
    /// jobs' temporary files.
    pub(super) fn stop_jobs(&mut self, signal: Signal) {
        for started in self.spawner.take_all() {
            self.started(started);
        }
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

/// How long a job's group gets, once the job ended, for processes on their
/// way out of it.
const SURVIVOR_GRACE: Duration = Duration::from_millis(20);

/// Returns the processes that stay in a job's group, once a first look
/// found some. A child that the script started just before it exited may
/// still be in the group, under the shell's name, because `setsid daemon &`
/// forks first and calls setsid() after. A second look a moment later
/// decides.
fn survivors(pgid: Pid) -> Vec<Background> {
    std::thread::sleep(SURVIVOR_GRACE);
    spawn::group_members(pgid)
}
