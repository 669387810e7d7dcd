//! Starting job processes on a thread of their own.
//!
//! `posix_spawn` suspends the calling thread until the new process has
//! replaced its image: about 0.2 ms for a shell on a 2-core VM, a third of
//! what the engine spends on a job. On this thread, that wait no longer
//! holds up the engine's loop, which meanwhile answers the requests of the
//! jobs already running and reaps the ones that end. The thread touches no
//! engine state: it gets a request, spawns, and sends the result back,
//! waking the loop through an eventfd.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::scheduler::{JobId, JobSpec};
use crate::spawn::{self, Child};

/// A job to start.
struct Request {
    job: JobId,
    spec: JobSpec,
    program: PathBuf,
    use_pidfd: bool,
}

/// The result of starting a job.
pub(super) type Started = (JobId, io::Result<Child>);

/// The spawning thread and the channels to it.
pub(super) struct Spawner {
    requests: Option<Sender<Request>>,
    results: Receiver<Started>,
    /// Becomes readable when results are waiting.
    wake: std::sync::Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
    /// Jobs whose start was asked for and whose result was not taken yet.
    starting: Vec<JobId>,
}

impl Spawner {
    /// Starts the thread. The caller has blocked the signals it handles, so
    /// that the thread, which inherits the mask, never takes them.
    pub(super) fn start() -> io::Result<Spawner> {
        let wake = std::sync::Arc::new(EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?);
        let (request_tx, request_rx) = mpsc::channel::<Request>();
        let (result_tx, result_rx) = mpsc::channel::<Started>();
        let thread_wake = std::sync::Arc::clone(&wake);
        let thread = std::thread::Builder::new().name("redors-spawn".into()).spawn(move || {
            for Request { job, spec, program, use_pidfd } in request_rx {
                let result = spawn::spawn(spec, &program, use_pidfd);
                if result_tx.send((job, result)).is_err() {
                    return;
                }
                let _ = thread_wake.write(1);
            }
        })?;
        Ok(Spawner { requests: Some(request_tx), results: result_rx, wake, thread: Some(thread), starting: Vec::new() })
    }

    /// Asks for a job's process to be started. The result comes through
    /// [`Spawner::take`], or at once if the thread is gone (it only ends
    /// when the spawner is dropped, or if spawning panicked).
    pub(super) fn submit(&mut self, job: JobId, spec: JobSpec, program: PathBuf, use_pidfd: bool) -> Option<Started> {
        let request = Request { job, spec, program, use_pidfd };
        let Some(requests) = &self.requests else {
            return Some((job, spawn::spawn(request.spec, &request.program, use_pidfd)));
        };
        match requests.send(request) {
            Ok(()) => {
                self.starting.push(job);
                None
            }
            Err(mpsc::SendError(request)) => Some((job, spawn::spawn(request.spec, &request.program, use_pidfd))),
        }
    }

    /// Returns the descriptor that becomes readable when results wait.
    pub(super) fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Tells whether no start is under way.
    pub(super) fn idle(&self) -> bool {
        self.starting.is_empty()
    }

    /// Tells whether a job's start is under way.
    pub(super) fn is_starting(&self, job: JobId) -> bool {
        self.starting.contains(&job)
    }

    /// Takes the results that arrived.
    pub(super) fn take(&mut self) -> Vec<Started> {
        // Read even when no start is under way, because `take_all` may have
        // taken a result before the thread signalled it. An eventfd left
        // readable would wake the loop at once, for as long as the job runs.
        let _ = self.wake.read();
        if self.starting.is_empty() {
            return Vec::new();
        }
        let started: Vec<Started> = self.results.try_iter().collect();
        self.starting.retain(|job| !started.iter().any(|(done, _)| done == job));
        started
    }

    /// Waits for every start under way and returns their results.
    pub(super) fn take_all(&mut self) -> Vec<Started> {
        let mut started = Vec::with_capacity(self.starting.len());
        while started.len() < self.starting.len() {
            match self.results.recv() {
                Ok(result) => started.push(result),
                Err(_) => break,
            }
        }
        let _ = self.wake.read();
        self.starting.clear();
        started
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop.
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::ffi::{OsStr, OsString};

    fn job(script: &str) -> (JobSpec, PathBuf) {
        let spec = JobSpec {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            cwd: std::env::temp_dir(),
            env: vec![(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))],
            stdout: std::fs::File::open("/dev/null").expect("/dev/null"),
            stderr: None,
            inherit: Vec::new(),
        };
        let program = spawn::find_program(OsStr::new("sh"), OsStr::new("/usr/bin:/bin")).expect("sh on PATH");
        (spec, program)
    }

    fn wake_is_readable(spawner: &Spawner) -> bool {
        let mut fds = [PollFd::new(spawner.wake_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).expect("poll") > 0
    }

    #[test]
    fn spawner_wake_quiet_after_late_signal() {
        let mut spawner = Spawner::start().expect("spawner");
        let (spec, program) = job("exit 0");
        assert!(spawner.submit(1, spec, program, false).is_none());
        assert!(spawner.is_starting(1));
        // Waiting for the result can take it before the thread signals it.
        // The signal then comes late, as this write does. One look at the
        // results must clear it, so that the engine's loop wakes once and
        // not again for as long as the job runs.
        let started = spawner.take_all();
        assert_eq!(started.len(), 1);
        assert!(spawner.idle());
        spawner.wake.write(1).expect("signal");
        assert!(wake_is_readable(&spawner));
        assert!(spawner.take().is_empty());
        assert!(!wake_is_readable(&spawner), "the wake descriptor stays readable with nothing to take");
    }
}
