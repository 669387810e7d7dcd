//! Unpacking the inner-command program into a cache directory.
//!
//! A Python wheel built by maturin holds the extension module but no other
//! executable, so the extension carries the inner-command program as bytes
//! and unpacks it once per build of redors, into a directory named after the
//! program's hash, with one symlink per command name. The engine puts that
//! directory first on every job's PATH.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::constants::COMMANDS;
use crate::output::remove_any;

/// File name of the program inside the directory.
pub const PROGRAM: &str = "redors-client";

/// How long the directory of a program that no run used is kept.
pub const UNUSED_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// Makes sure `root/client-HASH/` holds the program and its command links,
/// and returns that directory. Safe to call from several processes at once:
/// the directory is filled under a private name and renamed into place.
///
/// Each call marks the directory as used now. The first install of a
/// program removes the directories, left by earlier builds of redors, that
/// no run used for [`UNUSED_FOR`].
pub fn install_client(root: &Path, program: &[u8], hash: &str) -> io::Result<PathBuf> {
    let dir = root.join(format!("client-{hash}"));
    if dir.join(PROGRAM).is_file() {
        mark_used(&dir);
        return Ok(dir);
    }
    std::fs::create_dir_all(root)?;
    let staging = root.join(format!(".client-{hash}-{}", std::process::id()));
    remove_any(&staging)?;
    std::fs::create_dir(&staging)?;
    let result = fill(&staging, program).and_then(|()| std::fs::rename(&staging, &dir));
    match result {
        Ok(()) => {
            remove_unused(root, SystemTime::now());
            Ok(dir)
        }
        // Another process installed the same program first.
        Err(_) if dir.join(PROGRAM).is_file() => {
            let _ = remove_any(&staging);
            Ok(dir)
        }
        Err(err) => {
            let _ = remove_any(&staging);
            Err(err)
        }
    }
}

/// Sets a directory's modification time to now, as the time of its last use.
fn mark_used(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.set_modified(SystemTime::now());
    }
}

/// Removes the program directories under `root` last used more than
/// [`UNUSED_FOR`] before `now`. A run of another redors marks its directory
/// when it starts, so none that a running build uses goes.
fn remove_unused(root: &Path, now: SystemTime) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        if !entry.file_name().as_encoded_bytes().starts_with(b"client-") {
            continue;
        }
        let used = entry.metadata().and_then(|meta| meta.modified());
        if used.is_ok_and(|used| now.duration_since(used).is_ok_and(|age| age > UNUSED_FOR)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn fill(staging: &Path, program: &[u8]) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o755).open(staging.join(PROGRAM))?;
    file.write_all(program)?;
    file.sync_all()?;
    for name in COMMANDS {
        std::os::unix::fs::symlink(PROGRAM, staging.join(name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_once_with_every_command() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = install_client(root.path(), b"#!/bin/sh\necho hi\n", "abc").expect("install");
        assert_eq!(dir, root.path().join("client-abc"));
        for name in COMMANDS {
            assert_eq!(std::fs::read_link(dir.join(name)).expect("link"), Path::new(PROGRAM));
        }
        let again = install_client(root.path(), b"ignored", "abc").expect("install again");
        assert_eq!(again, dir);
        assert_eq!(std::fs::read(dir.join(PROGRAM)).expect("read"), b"#!/bin/sh\necho hi\n");
        assert_eq!(std::fs::read_dir(root.path()).expect("ls").count(), 1);
    }

    fn set_used(dir: &Path, age: Duration) {
        let handle = std::fs::File::open(dir).expect("open dir");
        handle.set_modified(SystemTime::now() - age).expect("set mtime");
    }

    #[test]
    fn install_removes_month_old_directories() {
        let root = tempfile::tempdir().expect("tempdir");
        let old = install_client(root.path(), b"old", "old").expect("install old");
        let recent = install_client(root.path(), b"recent", "recent").expect("install recent");
        set_used(&old, UNUSED_FOR + Duration::from_secs(3600));
        set_used(&recent, UNUSED_FOR - Duration::from_secs(3600));

        let new = install_client(root.path(), b"new", "new").expect("install new");

        assert!(new.join(PROGRAM).is_file());
        assert!(!old.exists(), "a directory unused for over a month stays");
        assert!(recent.join(PROGRAM).is_file());
    }

    #[test]
    fn install_marks_directory_used() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = install_client(root.path(), b"program", "abc").expect("install");
        set_used(&dir, UNUSED_FOR * 2);

        install_client(root.path(), b"program", "abc").expect("use");

        let used = std::fs::metadata(&dir).and_then(|meta| meta.modified()).expect("mtime");
        assert!(SystemTime::now().duration_since(used).expect("past") < Duration::from_secs(60));
    }
}
