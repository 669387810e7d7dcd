//! The files of one job: `$3`, the stdout capture, and the atomic
//! replacement of the target once the script has succeeded.
//!
//! A script writes its result either to `$3` (a path beside the target that
//! does not exist when the script starts, and may become a file, a directory
//! or a symlink) or to its stdout. Both live beside the target so that the
//! final `rename` is atomic. When the target's directory does not exist yet,
//! stdout is captured in the state directory and copied beside the target at
//! the end.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

use crate::paths::sibling;
use crate::stamp::{FileKind, Stamp, is_not_found};

/// Why a finished script's output was rejected.
#[derive(Debug)]
pub enum OutputError {
    /// The script wrote the target itself instead of `$3` or stdout.
    WroteTarget,
    /// The script wrote to stdout and also created `$3`.
    BothOutputs,
    /// A file operation failed.
    Io { action: &'static str, path: PathBuf, err: io::Error },
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputError::WroteTarget => write!(
                f,
                "the script changed the target file directly; write the result to $3 (or to stdout) \
                 and redo will move it into place"
            ),
            OutputError::BothOutputs => write!(
                f,
                "the script wrote to stdout and also created $3; write the result to only one of \
                 them, and send messages to stderr (>&2)"
            ),
            OutputError::Io { action, path, err } => {
                write!(f, "cannot {action} '{}': {err}", path.display())
            }
        }
    }
}

/// What the script produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Produced {
    /// `$3` was moved into place.
    Dollar3,
    /// The captured stdout became the target.
    Stdout,
    /// Nothing: the target does not exist after the build.
    Nothing,
}

/// The temporary files of one job.
#[derive(Debug)]
pub struct JobFiles {
    /// Absolute path of the target.
    pub target: PathBuf,
    /// Absolute path passed as `$3`.
    pub dollar3: PathBuf,
    /// Where the script's stdout goes.
    stdout_path: PathBuf,
    /// Whether `stdout_path` is beside the target, so that it can be renamed.
    stdout_beside: bool,
    /// Stamp of the target before the script ran.
    before: Stamp,
}

fn io_error(action: &'static str, path: &Path, err: io::Error) -> OutputError {
    OutputError::Io { action, path: path.to_path_buf(), err }
}

/// Removes a file, a symlink or a whole directory tree; a missing path is fine.
pub fn remove_any(path: &Path) -> io::Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(err) => Err(err),
    };
    match result {
        Err(err) if is_not_found(&err) => Ok(()),
        other => other,
    }
}

impl JobFiles {
    /// Chooses the temporary paths for building `target`, removes any left
    /// by an earlier run that died, and opens the stdout capture file.
    /// `spill_dir` holds the capture when the target's directory is missing.
    pub fn prepare(target: &Path, spill_dir: &Path, job: u64) -> Result<(JobFiles, File), OutputError> {
        let dollar3 = sibling(target, ".", ".redo3.tmp");
        let beside = sibling(target, ".", ".redo1.tmp");
        remove_any(&dollar3).map_err(|err| io_error("remove the stale temporary file", &dollar3, err))?;
        let stdout_beside = target.parent().is_some_and(Path::is_dir);
        let stdout_path = if stdout_beside {
            beside
        } else {
            std::fs::create_dir_all(spill_dir).map_err(|err| io_error("create", spill_dir, err))?;
            spill_dir.join(format!("job{job}.stdout"))
        };
        // Mode 0666 lets the umask decide the target's permissions, as for
        // any file the script would create itself.
        let stdout = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o666)
            .open(&stdout_path)
            .map_err(|err| io_error("create the stdout capture file", &stdout_path, err))?;
        let before = Stamp::read(target).map_err(|err| io_error("read", target, err))?;
        let files = JobFiles { target: target.to_path_buf(), dollar3, stdout_path, stdout_beside, before };
        Ok((files, stdout))
    }

    /// Checks what a successful script produced and moves it into place.
    /// `shared_stdout` says that processes the job left running may still
    /// write to the capture file, which must then be copied, not renamed.
    pub fn install(&self, stdout: &File, shared_stdout: bool) -> Result<Produced, OutputError> {
        let after = Stamp::read(&self.target).map_err(|err| io_error("read", &self.target, err))?;
        let dollar3 = Stamp::read(&self.dollar3).map_err(|err| io_error("read", &self.dollar3, err))?;
        let stdout_len = stdout.metadata().map_err(|err| io_error("read", &self.stdout_path, err))?.len();

        if after.exists() && after.kind != FileKind::Dir && after != self.before {
            return Err(OutputError::WroteTarget);
        }
        if dollar3.exists() && stdout_len > 0 {
            return Err(OutputError::BothOutputs);
        }
        if dollar3.exists() {
            replace(&self.dollar3, &self.target)?;
            self.remove_stdout();
            return Ok(Produced::Dollar3);
        }
        if stdout_len > 0 {
            if self.stdout_beside && !shared_stdout {
                replace(&self.stdout_path, &self.target)?;
            } else {
                self.copy_stdout_into_place()?;
            }
            return Ok(Produced::Stdout);
        }
        self.remove_stdout();
        remove_any(&self.target).map_err(|err| io_error("remove the stale target", &self.target, err))?;
        Ok(Produced::Nothing)
    }

    fn copy_stdout_into_place(&self) -> Result<(), OutputError> {
        let copy = sibling(&self.target, ".", ".redo1.copy.tmp");
        if let Err(err) = std::fs::copy(&self.stdout_path, &copy) {
            let _ = std::fs::remove_file(&copy);
            let action = if self.target.parent().is_some_and(Path::is_dir) {
                "copy stdout into"
            } else {
                "write the target; its directory does not exist, so create it in the .do script before writing"
            };
            return Err(io_error(action, &self.target, err));
        }
        self.remove_stdout();
        replace(&copy, &self.target)
    }

    fn remove_stdout(&self) {
        let _ = std::fs::remove_file(&self.stdout_path);
    }

    /// Removes every temporary file of the job, for a failed or interrupted build.
    pub fn discard(&self) {
        self.remove_stdout();
        let _ = remove_any(&self.dollar3);
        let _ = std::fs::remove_file(sibling(&self.target, ".", ".redo1.copy.tmp"));
    }
}

/// Moves `source` over `target` atomically. A plain rename cannot replace a
/// non-empty directory or change a file into a directory, so those cases
/// swap the two paths atomically (`RENAME_EXCHANGE`) and then delete the old
/// content, which now sits at `source`.
fn replace(source: &Path, target: &Path) -> Result<(), OutputError> {
    match std::fs::rename(source, target) {
        Ok(()) => return Ok(()),
        Err(err)
            if matches!(err.raw_os_error(), Some(libc::EISDIR | libc::ENOTEMPTY | libc::EEXIST | libc::ENOTDIR)) => {}
        Err(err) => return Err(io_error("move the result into place at", target, err)),
    }
    renameat2(AT_FDCWD, source, AT_FDCWD, target, RenameFlags::RENAME_EXCHANGE)
        .map_err(|errno: Errno| io_error("replace", target, io::Error::from(errno)))?;
    remove_any(source).map_err(|err| io_error("remove the previous version of", target, err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn prepare(dir: &Path, name: &str) -> (JobFiles, File) {
        JobFiles::prepare(&dir.join(name), &dir.join(".redo/tmp"), 1).expect("prepare")
    }

    #[test]
    fn dollar3_file_replaces_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("out"), b"old").expect("write");
        let (files, stdout) = prepare(dir.path(), "out");
        std::fs::write(&files.dollar3, b"new").expect("write $3");
        assert_eq!(files.install(&stdout, false).expect("install"), Produced::Dollar3);
        assert_eq!(std::fs::read(dir.path().join("out")).expect("read"), b"new");
        assert!(!files.dollar3.exists());
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn stdout_becomes_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, mut stdout) = prepare(dir.path(), "out");
        stdout.write_all(b"printed\n").expect("write");
        assert_eq!(files.install(&stdout, false).expect("install"), Produced::Stdout);
        assert_eq!(std::fs::read(dir.path().join("out")).expect("read"), b"printed\n");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn stdout_is_copied_when_background_processes_hold_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, mut stdout) = prepare(dir.path(), "out");
        stdout.write_all(b"first").expect("write");
        files.install(&stdout, true).expect("install");
        stdout.write_all(b" late").expect("late write");
        assert_eq!(std::fs::read(dir.path().join("out")).expect("read"), b"first");
    }

    #[test]
    fn both_outputs_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, mut stdout) = prepare(dir.path(), "out");
        stdout.write_all(b"progress").expect("write");
        std::fs::write(&files.dollar3, b"payload").expect("write $3");
        let err = files.install(&stdout, false).expect_err("must fail");
        assert!(matches!(err, OutputError::BothOutputs));
        assert!(err.to_string().contains(">&2"));
        files.discard();
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
    }

    #[test]
    fn nothing_written_removes_stale_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("clean"), b"stale").expect("write");
        let (files, stdout) = prepare(dir.path(), "clean");
        assert_eq!(files.install(&stdout, false).expect("install"), Produced::Nothing);
        assert!(!dir.path().join("clean").exists());
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
    }

    #[test]
    fn writing_the_target_directly_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, stdout) = prepare(dir.path(), "out");
        std::fs::write(dir.path().join("out"), b"direct").expect("write");
        assert!(matches!(files.install(&stdout, false), Err(OutputError::WroteTarget)));
    }

    #[test]
    fn directory_replaces_non_empty_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("outdir");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("alpha"), b"a").expect("write");
        let (files, stdout) = prepare(dir.path(), "outdir");
        std::fs::create_dir(&files.dollar3).expect("mkdir $3");
        std::fs::write(files.dollar3.join("gamma"), b"g").expect("write");
        files.install(&stdout, false).expect("install");
        assert!(target.join("gamma").exists());
        assert!(!target.join("alpha").exists());
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn file_replaces_directory_and_symlink_replaces_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("x");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("inside"), b"i").expect("write");
        let (files, stdout) = prepare(dir.path(), "x");
        std::fs::write(&files.dollar3, b"file now").expect("write");
        files.install(&stdout, false).expect("install");
        assert_eq!(std::fs::read(&target).expect("read"), b"file now");

        let (files, stdout) = prepare(dir.path(), "x");
        std::os::unix::fs::symlink("elsewhere", &files.dollar3).expect("symlink");
        files.install(&stdout, false).expect("install");
        assert_eq!(std::fs::read_link(&target).expect("readlink"), Path::new("elsewhere"));
    }

    #[test]
    fn stdout_spills_when_target_directory_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target_dir = dir.path().join("build");
        let (files, mut stdout) =
            JobFiles::prepare(&target_dir.join("out"), &dir.path().join(".redo/tmp"), 7).expect("prepare");
        stdout.write_all(b"data").expect("write");
        std::fs::create_dir(&target_dir).expect("mkdir");
        assert_eq!(files.install(&stdout, false).expect("install"), Produced::Stdout);
        assert_eq!(std::fs::read(target_dir.join("out")).expect("read"), b"data");
        assert_eq!(std::fs::read_dir(dir.path().join(".redo/tmp")).expect("ls").count(), 0);
    }

    #[test]
    fn new_target_follows_umask_not_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, mut stdout) = prepare(dir.path(), "out");
        stdout.write_all(b"x").expect("write");
        files.install(&stdout, false).expect("install");
        let mode = std::fs::metadata(dir.path().join("out")).expect("stat").permissions().mode() & 0o777;
        // SAFETY: umask only swaps the process's file mode mask and cannot fail.
        let mask = unsafe {
            let mask = libc::umask(0o022);
            libc::umask(mask);
            mask
        };
        assert_eq!(mode, 0o666 & !(mask as u32));
    }
}
