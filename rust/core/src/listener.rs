//! The engine's socket, on which inner commands connect.
//!
//! It lives in a fresh directory of mode 0700 (made by `mkdtemp`), and the
//! socket itself has mode 0600; a connection from a process of another user
//! is closed without a word. Both are removed when the engine ends. The
//! directory's name contains the engine's process id, so that a later run
//! removes those that a run killed by SIGKILL left behind.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Pid, Uid, mkdtemp};

/// Longest socket path that fits in `sockaddr_un`, with room for the name.
const MAX_SOCKET_PATH: usize = 100;

/// File name of the socket in its directory.
const SOCKET_NAME: &str = "engine.sock";

/// A listening socket in a private directory.
pub(crate) struct Listener {
    socket: UnixListener,
    dir: PathBuf,
    path: PathBuf,
}

fn private_dir() -> io::Result<PathBuf> {
    let mut bases: Vec<PathBuf> = Vec::new();
    for name in ["XDG_RUNTIME_DIR", "TMPDIR"] {
        if let Some(value) = std::env::var_os(name).filter(|value| !value.is_empty()) {
            bases.push(PathBuf::from(value));
        }
    }
    bases.push(PathBuf::from("/tmp"));
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no directory for the engine socket");
    for base in bases {
        // "/redors-PID-XXXXXX/engine.sock" takes up to 38 bytes.
        if base.as_os_str().len() + 38 > MAX_SOCKET_PATH || !base.is_dir() {
            continue;
        }
        match mkdtemp(&base.join(format!("{DIR_PREFIX}{}-XXXXXX", std::process::id()))) {
            Ok(dir) => {
                remove_stale_dirs(&base);
                return Ok(dir);
            }
            Err(errno) => last_error = errno.into(),
        }
    }
    Err(last_error)
}

/// Start of the name of an engine's socket directory, before its process id.
const DIR_PREFIX: &str = "redors-";

/// Removes, in `base`, the socket directories of this user whose engine
/// process is gone: the socket, then the directory if nothing else is in it.
fn remove_stale_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    let uid = Uid::current().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|name| name.strip_prefix(DIR_PREFIX)) else { continue };
        let Some(pid) = rest.split_once('-').and_then(|(pid, _)| pid.parse::<i32>().ok()) else { continue };
        if pid <= 0 || pid as u32 == std::process::id() {
            continue;
        }
        let path = entry.path();
        let owned_dir = path.symlink_metadata().is_ok_and(|meta| meta.is_dir() && meta.uid() == uid);
        if owned_dir && kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH) {
            let _ = std::fs::remove_file(path.join(SOCKET_NAME));
            let _ = std::fs::remove_dir(&path);
        }
    }
}

impl Listener {
    /// Creates the private directory and starts listening.
    pub fn create() -> io::Result<Listener> {
        let dir = private_dir()?;
        let path = dir.join(SOCKET_NAME);
        let socket = match UnixListener::bind(&path) {
            Ok(socket) => socket,
            Err(err) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(err);
            }
        };
        let listener = Listener { socket, dir, path };
        std::fs::set_permissions(&listener.path, std::fs::Permissions::from_mode(0o600))?;
        listener.socket.set_nonblocking(true)?;
        Ok(listener)
    }

    /// Path that jobs connect to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listening socket, to watch for connections.
    pub fn socket(&self) -> &UnixListener {
        &self.socket
    }

    /// Accepts one waiting connection from a process of this user; `None`
    /// when no connection is waiting.
    pub fn accept(&self) -> io::Result<Option<UnixStream>> {
        loop {
            let stream = match self.socket.accept() {
                Ok((stream, _)) => stream,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Err(err) => return Err(err),
            };
            match getsockopt(&stream, PeerCredentials) {
                Ok(credentials) if credentials.uid() == Uid::current().as_raw() => {
                    stream.set_nonblocking(true)?;
                    return Ok(Some(stream));
                }
                // Another user, or unknown: drop the connection.
                _ => continue,
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_dirs_of_dead_engines_go() {
        let base = tempfile::tempdir().expect("tempdir");
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead = child.id();
        child.wait().expect("wait");
        let stale = base.path().join(format!("{DIR_PREFIX}{dead}-abcdef"));
        let live = base.path().join(format!("{DIR_PREFIX}{}-ghijkl", std::process::id()));
        let other = base.path().join(format!("{DIR_PREFIX}0"));
        for dir in [&stale, &live, &other] {
            std::fs::create_dir(dir).expect("mkdir");
            std::fs::write(dir.join(SOCKET_NAME), b"").expect("socket stand-in");
        }

        remove_stale_dirs(base.path());

        assert!(!stale.exists(), "the directory of a dead engine stays");
        assert!(live.join(SOCKET_NAME).exists());
        assert!(other.join(SOCKET_NAME).exists());
    }

    #[test]
    fn socket_is_private_and_removed() {
        let listener = Listener::create().expect("listen");
        let path = listener.path().to_path_buf();
        let dir_mode = std::fs::metadata(path.parent().expect("dir")).expect("stat").mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let socket_mode = std::fs::symlink_metadata(&path).expect("stat").mode() & 0o777;
        assert_eq!(socket_mode, 0o600);
        let _client = UnixStream::connect(&path).expect("connect");
        assert!(listener.accept().expect("accept").is_some());
        assert!(listener.accept().expect("accept").is_none());
        drop(listener);
        assert!(!path.exists());
        assert!(!path.parent().expect("dir").exists());
    }
}
