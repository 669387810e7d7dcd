//! Starting job processes and watching them end.
//!
//! Every job runs in a process group of its own, so that redors can tell
//! whether processes the script started outlive it and can stop all of them
//! on Ctrl-C. A job is finished when its own process exits: redors watches a
//! pidfd of that process, never a pipe that a background process could keep
//! open. Without pidfds (Linux before 5.3), SIGCHLD reports when to reap.
//!
//! Jobs start through `posix_spawn` (glibc runs it with `CLONE_VFORK`, so the
//! engine's memory map is not copied) with everything set explicitly: stdin
//! is `/dev/null`, stdout the capture file, stderr inherited; the signal mask
//! is empty, although the engine blocks the signals it reads from its
//! signalfd; and SIGPIPE, SIGXFSZ and SIGCHLD have their default action,
//! although Python ignores the first two, and so do SIGINT and SIGTERM, which
//! redo forwards to stop a job even when it was itself started with them
//! ignored (`redo &` in a script). Every descriptor that redors opens is
//! close-on-exec, so a job gets no other.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

use crate::scheduler::{ExitStatus, JobSpec};

/// A started job process.
#[derive(Debug)]
pub(crate) struct Child {
    /// Process id, also the id of the job's process group.
    pub pid: Pid,
    /// A pidfd that becomes readable when the process exits; `None` when the
    /// kernel has no pidfds or they are turned off.
    pub pidfd: Option<OwnedFd>,
}

/// Looks a program name up in a `PATH` value, as `execvp` would.
pub(crate) fn find_program(name: &OsStr, path: &OsStr) -> Option<PathBuf> {
    if name.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(name));
    }
    std::env::split_paths(path).map(|dir| dir.join(name)).find(|candidate| {
        std::fs::metadata(candidate).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "argument contains a NUL byte"))
}

fn check(code: libc::c_int) -> io::Result<()> {
    if code == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(code)) }
}

/// A `posix_spawn_file_actions_t`, destroyed on drop.
struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    fn new() -> io::Result<FileActions> {
        // SAFETY: an all-zero value is a valid place for init to fill in.
        let mut actions = FileActions(unsafe { std::mem::zeroed() });
        // SAFETY: init writes to the object it is given and nothing else.
        check(unsafe { libc::posix_spawn_file_actions_init(&mut actions.0) })?;
        Ok(actions)
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: the object was initialized in new() and is destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// A `posix_spawnattr_t`, destroyed on drop.
struct SpawnAttributes(libc::posix_spawnattr_t);

impl SpawnAttributes {
    fn new() -> io::Result<SpawnAttributes> {
        // SAFETY: an all-zero value is a valid place for init to fill in.
        let mut attributes = SpawnAttributes(unsafe { std::mem::zeroed() });
        // SAFETY: init writes to the object it is given and nothing else.
        check(unsafe { libc::posix_spawnattr_init(&mut attributes.0) })?;
        Ok(attributes)
    }
}

impl Drop for SpawnAttributes {
    fn drop(&mut self) {
        // SAFETY: the object was initialized in new() and is destroyed once.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

/// Builds a signal set; `sigset_t` is plain data that sigemptyset initializes.
fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initializes the set, sigaddset only sets bits in it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Starts a job's process in a new process group. `program` is the path of
/// `argv[0]`, already looked up on the job's PATH.
pub(crate) fn spawn(spec: JobSpec, program: &Path, use_pidfd: bool) -> io::Result<Child> {
    let JobSpec { argv, cwd, env, stdout, stderr, inherit } = spec;
    if argv.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command line"));
    }
    let program = c_string(program.as_os_str().as_bytes())?;
    let argv: Vec<CString> = argv.iter().map(|arg| c_string(arg.as_bytes())).collect::<io::Result<_>>()?;
    let envp: Vec<CString> = env
        .iter()
        .map(|(name, value)| c_string(&[name.as_bytes(), b"=", value.as_bytes()].concat()))
        .collect::<io::Result<_>>()?;
    let cwd = c_string(cwd.as_os_str().as_bytes())?;
    let mut argv_pointers: Vec<*mut libc::c_char> = argv.iter().map(|arg| arg.as_ptr().cast_mut()).collect();
    argv_pointers.push(std::ptr::null_mut());
    let mut envp_pointers: Vec<*mut libc::c_char> = envp.iter().map(|var| var.as_ptr().cast_mut()).collect();
    envp_pointers.push(std::ptr::null_mut());

    let mut actions = FileActions::new()?;
    let mut attributes = SpawnAttributes::new()?;
    let empty = signal_set(&[]);
    let defaults = signal_set(&[libc::SIGPIPE, libc::SIGXFSZ, libc::SIGCHLD, libc::SIGINT, libc::SIGTERM]);
    let flags = libc::POSIX_SPAWN_SETPGROUP | libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
    // SAFETY: every pointer passed lives until posix_spawn returns: the
    // strings and pointer arrays above, and the action and attribute objects,
    // which were initialized by their constructors.
    let pid = unsafe {
        // stdout first: if stdin were closed in the engine, the capture could
        // sit on descriptor 0, and opening /dev/null there would replace it.
        check(libc::posix_spawn_file_actions_adddup2(&mut actions.0, stdout.as_raw_fd(), 1))?;
        if let Some(stderr) = &stderr {
            check(libc::posix_spawn_file_actions_adddup2(&mut actions.0, stderr.as_raw_fd(), 2))?;
        }
        check(libc::posix_spawn_file_actions_addopen(&mut actions.0, 0, c"/dev/null".as_ptr(), libc::O_RDONLY, 0))?;
        check(libc::posix_spawn_file_actions_addchdir_np(&mut actions.0, cwd.as_ptr()))?;
        // dup2 of a descriptor onto itself clears its close-on-exec flag
        // (POSIX 2024; glibc 2.36 does so).
        for &fd in &inherit {
            check(libc::posix_spawn_file_actions_adddup2(&mut actions.0, fd, fd))?;
        }
        check(libc::posix_spawnattr_setflags(&mut attributes.0, flags as libc::c_short))?;
        check(libc::posix_spawnattr_setpgroup(&mut attributes.0, 0))?;
        check(libc::posix_spawnattr_setsigmask(&mut attributes.0, &empty))?;
        check(libc::posix_spawnattr_setsigdefault(&mut attributes.0, &defaults))?;
        let mut pid: libc::pid_t = 0;
        check(libc::posix_spawn(
            &mut pid,
            program.as_ptr(),
            &actions.0,
            &attributes.0,
            argv_pointers.as_ptr(),
            envp_pointers.as_ptr(),
        ))?;
        Pid::from_raw(pid)
    };
    drop(stdout);
    drop(stderr);
    let pidfd = if use_pidfd { pidfd_open(pid).ok() } else { None };
    Ok(Child { pid, pidfd })
}

/// Opens a pidfd for any process; it is close-on-exec.
pub(crate) fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new
    // descriptor or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Tells whether pidfds work on this kernel.
pub(crate) fn pidfds_supported() -> bool {
    pidfd_open(nix::unistd::getpid()).is_ok()
}

/// Reaps a job process if it exited; `None` while it still runs.
pub(crate) fn try_wait(child: &Child) -> io::Result<Option<ExitStatus>> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
    loop {
        let result = match &child.pidfd {
            Some(pidfd) => waitid(Id::PIDFd(pidfd.as_fd()), flags),
            None => waitpid(child.pid, Some(WaitPidFlag::WNOHANG)),
        };
        return match result {
            Ok(WaitStatus::Exited(_, code)) => Ok(Some(ExitStatus::Code(code))),
            Ok(WaitStatus::Signaled(_, signal, _)) => Ok(Some(ExitStatus::Signal(signal as i32))),
            Ok(_) => Ok(None),
            Err(Errno::EINTR) => continue,
            Err(errno) => Err(io::Error::from(errno)),
        };
    }
}

/// Sends a signal to every process of a job's group; a group that is gone
/// already is fine.
pub(crate) fn signal_group(pgid: Pid, signal: Signal) {
    let _ = killpg(pgid, signal);
}

/// A process that outlived its job's script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Background {
    /// Process id.
    pub pid: i32,
    /// Command name, from `/proc/PID/comm`.
    pub name: String,
}

/// Lists the processes still in a job's process group.
pub(crate) fn group_members(pgid: Pid) -> Vec<Background> {
    // Cheap test first: the group is usually empty.
    if let Err(Errno::ESRCH) = killpg(pgid, None) {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut members = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces; the
        // fields after it are: state, ppid, pgrp. A zombie has exited and
        // only waits to be reaped by its parent, so it does not count.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let open = stat.find('(').unwrap_or(0);
        let mut fields = stat[close + 1..].split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let group = fields.nth(1).and_then(|field| field.parse::<i32>().ok());
        if group == Some(pgid.as_raw()) && state != "Z" && state != "X" {
            let name = stat.get(open + 1..close).unwrap_or("?").to_string();
            members.push(Background { pid, name });
        }
    }
    members.sort_by_key(|member| member.pid);
    members
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::fs::File;
    use std::time::{Duration, Instant};

    fn spec(script: &str, stdout: File) -> JobSpec {
        JobSpec {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            cwd: std::env::temp_dir(),
            env: vec![(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))],
            stdout,
            stderr: None,
            inherit: Vec::new(),
        }
    }

    fn start(spec: JobSpec, use_pidfd: bool) -> io::Result<Child> {
        let program = find_program(OsStr::new("sh"), OsStr::new("/usr/bin:/bin")).expect("sh on PATH");
        spawn(spec, &program, use_pidfd)
    }

    #[test]
    fn program_lookup_follows_path() {
        let found = find_program(OsStr::new("sh"), OsStr::new("/nonexistent:/usr/bin:/bin")).expect("sh");
        assert!(found.is_absolute());
        assert_eq!(find_program(OsStr::new("./x.do"), OsStr::new("/bin")), Some(PathBuf::from("./x.do")));
        assert_eq!(find_program(OsStr::new("no-such-program-here"), OsStr::new("/usr/bin:/bin")), None);
    }

    fn wait(child: &Child) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = try_wait(child).expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "job did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn capture() -> (tempfile::NamedTempFile, File) {
        let file = tempfile::NamedTempFile::new().expect("tempfile");
        let handle = file.reopen().expect("reopen");
        (file, handle)
    }

    #[test]
    fn exit_status_and_signal_are_reported() {
        for use_pidfd in [true, false] {
            let (_keep, out) = capture();
            let child = start(spec("exit 3", out), use_pidfd).expect("spawn");
            assert_eq!(wait(&child), ExitStatus::Code(3));
            let (_keep, out) = capture();
            let child = start(spec("kill -TERM $$", out), use_pidfd).expect("spawn");
            assert_eq!(wait(&child), ExitStatus::Signal(15));
        }
    }

    /// Descriptors of this process that a child inherits: those without
    /// close-on-exec, which the harness that started the tests may pass on.
    fn inheritable_fds() -> Vec<i32> {
        let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .expect("list fds")
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd: &i32| {
                // SAFETY: F_GETFD only reads the flags of a descriptor number.
                let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
                flags >= 0 && flags & libc::FD_CLOEXEC == 0
            })
            .collect();
        fds.extend([0, 1, 2]);
        fds.sort_unstable();
        fds.dedup();
        fds
    }

    #[test]
    fn job_gets_no_descriptor_opened_by_redors() {
        let held = tempfile::NamedTempFile::new().expect("tempfile");
        let _socket = std::os::unix::net::UnixDatagram::unbound().expect("socket");
        let (file, out) = capture();
        // ls lists the descriptors of the job's own process, the shell.
        let script = "ls -l /proc/$$/fd";
        let child = start(spec(script, out), true).expect("spawn");
        assert_eq!(wait(&child), ExitStatus::Code(0));
        let listing = std::fs::read_to_string(file.path()).expect("read");
        assert!(!listing.contains(&*held.path().to_string_lossy()), "{listing}");
        let mut fds: Vec<i32> = listing
            .lines()
            .filter_map(|line| line.split_once(" -> ")?.0.split_whitespace().last()?.parse().ok())
            .collect();
        fds.sort_unstable();
        assert_eq!(fds, inheritable_fds(), "{listing}");
    }

    #[test]
    fn job_runs_in_own_group_with_clear_signal_mask() {
        // Block signals in this thread as the engine does, and ignore SIGPIPE
        // as Python does: the job must see neither. grep is the job's own
        // program, so it reports the mask the job started with.
        let blocked = signal_set(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGCHLD]);
        let mut previous = signal_set(&[]);
        // SAFETY: the sets are initialized; only this test thread's mask changes.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, &mut previous) };
        let (file, out) = capture();
        let grep = find_program(OsStr::new("grep"), OsStr::new("/usr/bin:/bin")).expect("grep");
        let mut job = spec("", out);
        job.argv = vec!["grep".into(), "-E".into(), "^(SigBlk|SigIgn|NSpgid)".into(), "/proc/self/status".into()];
        let child = spawn(job, &grep, true).expect("spawn");
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
        assert_eq!(wait(&child), ExitStatus::Code(0));
        let text = std::fs::read_to_string(file.path()).expect("read");
        let field =
            |name: &str| text.lines().find_map(|line| line.strip_prefix(name)).map(str::trim).expect(name).to_string();
        assert_eq!(field("NSpgid:"), child.pid.as_raw().to_string(), "{text}");
        assert_eq!(field("SigBlk:"), "0000000000000000", "{text}");
        let ignored = u64::from_str_radix(&field("SigIgn:"), 16).expect("hex");
        assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE is ignored: {text}");
    }

    #[test]
    fn missing_program_is_an_error() {
        let (_keep, out) = capture();
        let err = spawn(spec("true", out), Path::new("/nonexistent/sh"), true).expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn background_process_is_found_in_group() {
        let (_keep, out) = capture();
        let child = start(spec("sleep 5 & exit 0", out), true).expect("spawn");
        assert_eq!(wait(&child), ExitStatus::Code(0));
        let members = group_members(child.pid);
        assert_eq!(members.len(), 1, "{members:?}");
        assert_eq!(members[0].name, "sleep");
        signal_group(child.pid, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !group_members(child.pid).is_empty() {
            assert!(Instant::now() < deadline, "background process survived SIGKILL");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
