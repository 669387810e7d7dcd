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

use crate::constants::COMMANDS;
use crate::output::remove_any;

/// File name of the program inside the directory.
pub const PROGRAM: &str = "redors-client";

/// Makes sure `root/client-HASH/` holds the program and its command links,
/// and returns that directory. Safe to call from several processes at once:
/// the directory is filled under a private name and renamed into place.
pub fn install_client(root: &Path, program: &[u8], hash: &str) -> io::Result<PathBuf> {
    let dir = root.join(format!("client-{hash}"));
    if dir.join(PROGRAM).is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(root)?;
    let staging = root.join(format!(".client-{hash}-{}", std::process::id()));
    remove_any(&staging)?;
    std::fs::create_dir(&staging)?;
    let result = fill(&staging, program).and_then(|()| std::fs::rename(&staging, &dir));
    match result {
        Ok(()) => Ok(dir),
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
}
