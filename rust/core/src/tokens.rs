//! Job tokens: each running script has one.
//!
//! A run always owns one *implicit* token, as every process under a GNU
//! make jobserver does. With `-j N` above 1 the run also serves a jobserver
//! of its own holding N - 1 more; under `make -j` (MAKEFLAGS names a
//! jobserver) it takes its extra tokens from make's instead. Either way the
//! jobserver is handed to every script, so a `make` that a script runs shares
//! the same tokens, and every token the run took is returned when it ends,
//! fails or is interrupted (tokens are released when dropped).
//!
//! Tokens are acquired by the `jobserver` crate's helper thread, which blocks
//! on the jobserver and hands each token over through an eventfd that the
//! engine watches. The crate interrupts that thread with SIGUSR1 when the run
//! ends, so the process gets a do-nothing SIGUSR1 handler.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use jobserver::{Acquired, Client, FromEnvErrorKind, HelperThread};
use nix::sys::eventfd::{EfdFlags, EventFd};

/// The right to run one script.
#[derive(Debug)]
pub(crate) enum Token {
    /// The run's own token.
    Implicit,
    /// One of the extra tokens of a run without a jobserver.
    Local,
    /// A token taken from a jobserver; released to it when dropped.
    Shared(Acquired),
}

/// Access to the jobserver that scripts get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Handoff {
    /// Descriptors that scripts inherit (a pipe jobserver's two ends).
    pub inherit: Vec<RawFd>,
    /// Value of MAKEFLAGS for scripts; `None` leaves the caller's value.
    pub makeflags: Option<OsString>,
}

/// Source of the run's tokens, decided at its start.
pub(crate) struct Plan {
    pub tokens: Tokens,
    /// A message for the user, when a jobserver in the environment is broken.
    pub warning: Option<String>,
}

/// The run's tokens.
pub(crate) struct Tokens {
    implicit_free: bool,
    /// Extra tokens of a run without a jobserver.
    local_free: usize,
    /// Tokens taken from the jobserver that no job uses yet.
    idle: Vec<Acquired>,
    /// The jobserver, when tokens beyond the implicit one exist.
    shared: Option<Shared>,
    /// Access to the jobserver for scripts; `None` leaves their environment as is.
    handoff: Option<Handoff>,
}

/// A jobserver and the helper thread that takes tokens from it.
struct Shared {
    helper: HelperThread,
    inbox: Arc<Mutex<Vec<io::Result<Acquired>>>>,
    wake: Arc<EventFd>,
    /// Tokens asked of the helper thread and not delivered yet.
    requested: usize,
}

/// Returns the jobserver that make passed in the environment, parsed once
/// per process. The crate takes ownership of its descriptors and would
/// close them when the client is dropped, which must not happen between runs.
fn inherited_jobserver() -> &'static Result<Client, (FromEnvErrorKind, String, OsString)> {
    static INHERITED: OnceLock<Result<Client, (FromEnvErrorKind, String, OsString)>> = OnceLock::new();
    INHERITED.get_or_init(|| {
        // SAFETY: the descriptors named in MAKEFLAGS were passed to this
        // process for this purpose. The engine parses them (through
        // `Tokens::adopt_inherited`) before it opens descriptors of its own,
        // which could otherwise take the numbers of closed ones.
        let found = unsafe { Client::from_env_ext(true) };
        found.client.map_err(|err| {
            let value = found.var.map(|(_, value)| value).unwrap_or_default();
            (err.kind(), err.to_string(), value)
        })
    })
}

/// Returns the jobserver argument of a client (`R,W` or `fifo:PATH`), read
/// from the environment that the crate sets up for a child process.
fn jobserver_argument(client: &Client) -> Option<String> {
    let mut command = Command::new("true");
    client.configure(&mut command);
    let flags = command.get_envs().find(|(name, _)| *name == OsStr::new("CARGO_MAKEFLAGS"))?.1?;
    flags.to_str()?.split_whitespace().find_map(|word| word.strip_prefix("--jobserver-auth=")).map(str::to_string)
}

/// Descriptors named by a pipe jobserver argument `R,W`.
fn pipe_fds(argument: &str) -> Vec<RawFd> {
    match argument.split_once(',') {
        Some((read, write)) => [read, write].iter().filter_map(|fd| fd.parse::<RawFd>().ok()).collect(),
        None => Vec::new(),
    }
}

/// Removes the words that set parallelism or name a jobserver from a
/// MAKEFLAGS value.
pub(crate) fn strip_jobserver(makeflags: &OsStr) -> OsString {
    let text = makeflags.to_string_lossy();
    let kept: Vec<&str> = text
        .split_whitespace()
        .filter(|word| {
            !(word.starts_with("--jobserver-auth=")
                || word.starts_with("--jobserver-fds=")
                || *word == "-j"
                || (word.starts_with("-j") && word[2..].chars().all(|c| c.is_ascii_digit())))
        })
        .collect();
    OsString::from(kept.join(" "))
}

impl Tokens {
    /// Parses the jobserver that MAKEFLAGS names, if any, before the run
    /// opens a descriptor. When make did not pass its descriptors, their
    /// numbers are free, and a descriptor that the run opens later on one
    /// of them must not be taken for the jobserver.
    pub fn adopt_inherited() {
        let _ = inherited_jobserver();
    }

    /// Plans the tokens of a run: `jobs` is `-j` when given; without it, a
    /// jobserver in the environment is used when there is one.
    /// `makeflags` is the MAKEFLAGS value that scripts would otherwise get.
    pub fn plan(jobs: Option<usize>, makeflags: Option<&OsStr>) -> io::Result<Plan> {
        if let Some(jobs) = jobs {
            if jobs <= 1 {
                return Ok(Plan { tokens: Tokens::single(), warning: None });
            }
            let client = match Client::new(jobs - 1) {
                Ok(client) => client,
                Err(err) => {
                    let warning = format!("cannot create a jobserver ({err}); make in scripts will not share -j{jobs}");
                    return Ok(Plan { tokens: Tokens::counted(jobs), warning: Some(warning) });
                }
            };
            let argument = jobserver_argument(&client).unwrap_or_default();
            let base = makeflags.map(strip_jobserver).unwrap_or_default();
            let mut flags = base.to_string_lossy().into_owned();
            if !flags.is_empty() {
                flags.push(' ');
            }
            // make 4.2 and later read --jobserver-auth; older ones only
            // --jobserver-fds. Both name the same pipe.
            flags.push_str(&format!("-j{jobs} --jobserver-auth={argument} --jobserver-fds={argument}"));
            let handoff = Handoff { inherit: pipe_fds(&argument), makeflags: Some(flags.into()) };
            return Ok(Plan { tokens: Tokens::shared(client, handoff)?, warning: None });
        }
        match inherited_jobserver() {
            Ok(client) => {
                let argument = jobserver_argument(client).unwrap_or_default();
                let handoff = Handoff { inherit: pipe_fds(&argument), makeflags: None };
                Ok(Plan { tokens: Tokens::shared(client.clone(), handoff)?, warning: None })
            }
            Err((FromEnvErrorKind::NoEnvVar | FromEnvErrorKind::NoJobserver, ..)) => {
                Ok(Plan { tokens: Tokens::single(), warning: None })
            }
            Err((_, detail, value)) => {
                let warning = format!(
                    "the jobserver that MAKEFLAGS names ('{}') cannot be used: {detail}; \
                     building with -j1 (in the makefile, start the rule's command with '+' so that \
                     make passes its jobserver to redo)",
                    value.to_string_lossy().trim()
                );
                // Scripts get MAKEFLAGS without the broken jobserver, so that
                // a make they run does not complain about it too.
                let handoff = Handoff { inherit: Vec::new(), makeflags: makeflags.map(strip_jobserver) };
                let tokens = Tokens { handoff: Some(handoff), ..Tokens::single() };
                Ok(Plan { tokens, warning: Some(warning) })
            }
        }
    }

    /// Only the implicit token: one script at a time.
    fn single() -> Tokens {
        Tokens::counted(1)
    }

    /// `jobs` tokens that no other process shares: for tests, and for a
    /// run whose jobserver pipe could not be created.
    pub fn counted(jobs: usize) -> Tokens {
        Tokens {
            implicit_free: true,
            local_free: jobs.saturating_sub(1),
            idle: Vec::new(),
            shared: None,
            handoff: None,
        }
    }

    fn shared(client: Client, handoff: Handoff) -> io::Result<Tokens> {
        let inbox: Arc<Mutex<Vec<io::Result<Acquired>>>> = Arc::default();
        let wake = Arc::new(EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?);
        let (thread_inbox, thread_wake) = (Arc::clone(&inbox), Arc::clone(&wake));
        let helper = client.into_helper_thread(move |token| {
            if let Ok(mut inbox) = thread_inbox.lock() {
                inbox.push(token);
            }
            let _ = thread_wake.write(1);
        })?;
        let shared = Shared { helper, inbox, wake, requested: 0 };
        Ok(Tokens { shared: Some(shared), handoff: Some(handoff), ..Tokens::single() })
    }

    /// Returns the access to the jobserver that scripts get, when there is one.
    pub fn handoff(&self) -> Option<&Handoff> {
        self.handoff.as_ref()
    }

    /// Returns the descriptor that becomes readable when tokens arrive.
    pub fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.shared.as_ref().map(|shared| shared.wake.as_fd())
    }

    /// Takes a free token, if there is one.
    pub fn take(&mut self) -> Option<Token> {
        if self.implicit_free {
            self.implicit_free = false;
            return Some(Token::Implicit);
        }
        if self.local_free > 0 {
            self.local_free -= 1;
            return Some(Token::Local);
        }
        self.idle.pop().map(Token::Shared)
    }

    /// Tells whether a token is free now.
    pub fn has_free(&self) -> bool {
        self.implicit_free || self.local_free > 0 || !self.idle.is_empty()
    }

    /// Gives a token back.
    pub fn put(&mut self, token: Token) {
        match token {
            Token::Implicit => self.implicit_free = true,
            Token::Local => self.local_free += 1,
            Token::Shared(acquired) => self.idle.push(acquired),
        }
    }

    /// Makes the number of tokens on hand or on their way match `wanted`,
    /// the number of scripts waiting for one: requests more from the
    /// jobserver, or releases those that nothing waits for.
    pub fn balance(&mut self, wanted: usize) {
        let Some(shared) = &mut self.shared else { return };
        let on_hand = self.idle.len() + self.local_free + usize::from(self.implicit_free);
        if wanted > on_hand + shared.requested {
            for _ in 0..wanted - on_hand - shared.requested {
                shared.helper.request_token();
                shared.requested += 1;
            }
        } else if wanted < on_hand {
            let surplus = (on_hand - wanted).min(self.idle.len());
            self.idle.truncate(self.idle.len() - surplus);
        }
    }

    /// Moves the tokens that the helper thread delivered to the free ones.
    /// Returns a message when the jobserver failed; the run then goes on
    /// with the tokens it has.
    pub fn collect(&mut self) -> Option<String> {
        let shared = self.shared.as_mut()?;
        let _ = shared.wake.read();
        let delivered = shared.inbox.lock().map(|mut inbox| std::mem::take(&mut *inbox)).unwrap_or_default();
        let mut failure = None;
        for token in delivered {
            shared.requested = shared.requested.saturating_sub(1);
            match token {
                Ok(acquired) => self.idle.push(acquired),
                Err(err) => failure = Some(format!("cannot take a token from the jobserver: {err}")),
            }
        }
        failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_removes_jobserver_words_only() {
        let flags = OsStr::new(" -j4 -s --jobserver-auth=3,4 --jobserver-fds=3,4 -- VAR=1");
        assert_eq!(strip_jobserver(flags), OsString::from("-s -- VAR=1"));
        assert_eq!(strip_jobserver(OsStr::new("-j")), OsString::from(""));
        assert_eq!(strip_jobserver(OsStr::new("-jx")), OsString::from("-jx"));
    }

    #[test]
    fn server_hands_out_jobs_minus_one_extra_tokens() {
        let plan = Tokens::plan(Some(3), Some(OsStr::new("-s"))).expect("plan");
        let mut tokens = plan.tokens;
        let handoff = tokens.handoff().cloned().expect("handoff");
        assert_eq!(handoff.inherit.len(), 2);
        let flags = handoff.makeflags.expect("makeflags").to_string_lossy().into_owned();
        assert!(flags.starts_with("-s -j3 --jobserver-auth="), "{flags}");
        assert!(matches!(tokens.take(), Some(Token::Implicit)));
        tokens.balance(3);
        let mut extra = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while extra.len() < 2 && std::time::Instant::now() < deadline {
            assert!(tokens.collect().is_none());
            while let Some(token) = tokens.take() {
                extra.push(token);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(extra.len(), 2, "the pipe holds jobs - 1 tokens");
        std::thread::sleep(std::time::Duration::from_millis(50));
        tokens.collect();
        assert!(tokens.take().is_none(), "no third extra token");
    }

    #[test]
    fn one_job_needs_no_jobserver() {
        let plan = Tokens::plan(Some(1), None).expect("plan");
        assert!(plan.tokens.handoff().is_none());
        assert!(plan.warning.is_none());
    }
}
