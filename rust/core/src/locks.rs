//! Locks that keep two runs on one tree from building the same target at
//! once.
//!
//! A run holds a write lock on one byte of `.redo/locks` while it builds a
//! target. The byte's offset comes from a hash of the target's key. The locks
//! are open file description locks (`F_OFD_SETLK`): the kernel releases them
//! when the run's process ends, even by SIGKILL, and locks taken through the
//! same description never conflict, so a run cannot block itself.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Name of the lock file inside the state directory.
pub const LOCK_FILE: &str = "locks";

/// The lock file of a tree.
#[derive(Debug)]
pub(crate) struct Locks {
    file: File,
}

/// Offset of the byte that stands for a target.
fn offset(key: &Path) -> libc::off_t {
    let hash = blake3::hash(key.as_os_str().as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash.as_bytes()[..8]);
    // Keep the offset positive and far from the largest off_t.
    (u64::from_le_bytes(bytes) >> 2) as libc::off_t
}

fn lock_request(kind: libc::c_short, key: &Path) -> libc::flock {
    // SAFETY: flock is plain data; zero is valid for every field.
    let mut request: libc::flock = unsafe { std::mem::zeroed() };
    request.l_type = kind;
    request.l_whence = libc::SEEK_SET as libc::c_short;
    request.l_start = offset(key);
    request.l_len = 1;
    request
}

impl Locks {
    /// Opens (creating) the lock file in the state directory `dir`.
    pub fn open(dir: &Path) -> io::Result<Locks> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(dir.join(LOCK_FILE))?;
        Ok(Locks { file })
    }

    fn control(&self, command: libc::c_int, request: &mut libc::flock) -> io::Result<libc::c_int> {
        loop {
            // SAFETY: the descriptor is open for the life of self, and the
            // request points to an initialized flock.
            let result = unsafe { libc::fcntl(self.file.as_raw_fd(), command, request as *mut libc::flock) };
            if result >= 0 {
                return Ok(result);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Takes the lock of a target; returns false when another run holds it.
    pub fn try_lock(&self, key: &Path) -> io::Result<bool> {
        let mut request = lock_request(libc::F_WRLCK as libc::c_short, key);
        match self.control(libc::F_OFD_SETLK, &mut request) {
            Ok(_) => Ok(true),
            Err(err) if matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Releases the lock of a target.
    pub fn unlock(&self, key: &Path) {
        let mut request = lock_request(libc::F_UNLCK as libc::c_short, key);
        let _ = self.control(libc::F_OFD_SETLK, &mut request);
    }

    /// Tells whether another run holds the lock of a target.
    pub fn is_held_elsewhere(&self, key: &Path) -> io::Result<bool> {
        let mut request = lock_request(libc::F_WRLCK as libc::c_short, key);
        self.control(libc::F_OFD_GETLK, &mut request)?;
        Ok(request.l_type != libc::F_UNLCK as libc::c_short)
    }
}

/// Tells whether a run is building a target now, from the lock file in the
/// state directory `dir`, without creating it.
pub(crate) fn is_being_built(dir: &Path, key: &Path) -> bool {
    let Ok(file) = OpenOptions::new().read(true).write(true).open(dir.join(LOCK_FILE)) else {
        return false;
    };
    Locks { file }.is_held_elsewhere(key).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_description_sees_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Locks::open(dir.path()).expect("open");
        let second = Locks::open(dir.path()).expect("open");
        let key = Path::new("sub/target");
        assert!(first.try_lock(key).expect("lock"));
        assert!(first.try_lock(key).expect("same description relocks"));
        assert!(!second.try_lock(key).expect("lock"));
        assert!(second.is_held_elsewhere(key).expect("query"));
        assert!(!second.is_held_elsewhere(Path::new("other")).expect("query"));
        first.unlock(key);
        assert!(!second.is_held_elsewhere(key).expect("query"));
        assert!(second.try_lock(key).expect("lock"));
    }

    #[test]
    fn lock_dies_with_its_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = Path::new("count");
        // A child process takes the lock and is killed while holding it.
        let script = format!(
            "exec 9<>'{}'; exec python3 -c 'import fcntl,struct,sys,os; \
             fcntl.fcntl(9, 37, struct.pack(\"hhqqi\", 1, 0, {}, 1, 0)); print(\"locked\", flush=True); \
             os.read(0, 1)'",
            dir.path().join(LOCK_FILE).display(),
            offset(key)
        );
        let mut child = std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")), &mut line)
            .expect("read");
        assert_eq!(line.trim(), "locked");
        let locks = Locks::open(dir.path()).expect("open");
        assert!(!locks.try_lock(key).expect("lock"));
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(locks.try_lock(key).expect("lock after the holder died"));
    }
}
