//! Receiving SIGINT, SIGTERM and SIGHUP (and SIGCHLD without pidfds)
//! through a signalfd in the engine's epoll set.
//!
//! The signals are blocked in the calling thread while the engine runs, so
//! the Python interpreter's handlers do not run; the previous mask comes back
//! when the [`Signals`] value is dropped. Jobs start with an empty mask.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// The signals the engine handles, blocked and readable from a descriptor.
pub(crate) struct Signals {
    fd: SignalFd,
    previous: SigSet,
}

impl Signals {
    /// Blocks the stop signals, and SIGCHLD when `child_signal` is set, and
    /// opens a signalfd for them.
    pub fn block(child_signal: bool) -> io::Result<Signals> {
        let mut set = SigSet::empty();
        for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(signal);
        }
        if child_signal {
            set.add(Signal::SIGCHLD);
        }
        let mut previous = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut previous))?;
        match SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
            Ok(fd) => Ok(Signals { fd, previous }),
            Err(errno) => {
                let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
                Err(errno.into())
            }
        }
    }

    /// Returns the signals that arrived since the last call.
    pub fn take(&mut self) -> Vec<Signal> {
        let mut signals = Vec::new();
        while let Ok(Some(info)) = self.fd.read_signal() {
            if let Ok(signal) = Signal::try_from(info.ssi_signo as i32) {
                signals.push(signal);
            }
        }
        signals
    }

    /// The descriptor to watch.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.previous), None);
    }
}
