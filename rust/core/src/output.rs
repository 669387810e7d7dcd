//! The files of one job: `$3`, the stdout capture, and the atomic
//! replacement of the target once the script has succeeded.
//!
//! A script writes its result either to `$3` (a path beside the target that
//! does not exist when the script starts, and may become a file, a directory
//! or a symlink) or to its stdout. `$3` lives beside the target so that the
//! final `rename` is atomic. Stdout goes to a capture file in the state
//! directory. Most scripts leave it empty, so the next job reuses the file
//! instead of creating and deleting one per job. A non-empty capture is
//! renamed over the target, or copied across file systems.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

use crate::paths::sibling;
use crate::stamp::{FileKind, Stamp, is_not_found};

/// Reason a finished script's output was rejected.
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

/// Output of a finished script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Produced {
    /// `$3` was moved into place.
    Dollar3,
    /// The captured stdout became the target.
    Stdout,
    /// Nothing: the target does not exist after the build.
    Nothing,
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

/// A file that receives a job's stdout.
#[derive(Debug)]
pub struct Capture {
    path: PathBuf,
    file: File,
}

impl Capture {
    /// Returns a second handle on the file, for the job's process.
    pub fn for_child(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Current size of the file.
    pub fn size(&self) -> io::Result<u64> {
        self.file.metadata().map(|meta| meta.len())
    }

    /// Reads from `offset` to the end, up to `limit` bytes. Reading at an
    /// offset leaves the file position, which the job's process shares,
    /// where the process put it.
    pub fn read_from(&self, offset: u64, limit: usize) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let available = self.size()?.saturating_sub(offset).min(limit as u64) as usize;
        let mut data = vec![0u8; available];
        let mut filled = 0;
        while filled < available {
            match self.file.read_at(&mut data[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(count) => filled += count,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        data.truncate(filled);
        Ok(data)
    }
}

/// The stdout capture files of one run, in the state directory. A capture
/// that stayed empty goes back to the pool for the next job. Files are named
/// after the engine's pid, so runs that share a tree do not mix them up, and
/// a run killed without cleaning up is recognized later.
#[derive(Debug)]
pub struct CapturePool {
    dir: PathBuf,
    free: Vec<Capture>,
    created: u64,
}

const CAPTURE_PREFIX: &str = "stdout.";

impl CapturePool {
    /// Creates a pool that keeps its files in `dir`, created on first use.
    pub fn new(dir: PathBuf) -> CapturePool {
        CapturePool { dir, free: Vec::new(), created: 0 }
    }

    /// Returns an empty capture file, reusing a free one.
    pub fn take(&mut self) -> Result<Capture, OutputError> {
        if let Some(capture) = self.free.pop() {
            return Ok(capture);
        }
        if self.created == 0 {
            std::fs::create_dir_all(&self.dir).map_err(|err| io_error("create", &self.dir, err))?;
            remove_stale_captures(&self.dir);
        }
        self.created += 1;
        let path = self.dir.join(format!("{CAPTURE_PREFIX}{}.{}", std::process::id(), self.created));
        // Mode 0666 lets the umask decide the target's permissions, as for
        // any file the script would create itself.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o666)
            .open(&path)
            .map_err(|err| io_error("create the stdout capture file", &path, err))?;
        Ok(Capture { path, file })
    }

    /// Takes back a capture after its job: emptied and kept for reuse,
    /// unless a process that the job left running may still write to it.
    pub fn give_back(&mut self, mut capture: Capture, still_shared: bool) {
        use std::io::Seek;
        // The job's process moved the shared file position; the next job
        // must write from the start.
        let emptied =
            !still_shared && capture.file.set_len(0).is_ok() && capture.file.seek(io::SeekFrom::Start(0)).is_ok();
        if emptied {
            self.free.push(capture);
        } else {
            let _ = std::fs::remove_file(&capture.path);
        }
    }
}

impl Drop for CapturePool {
    fn drop(&mut self) {
        for capture in self.free.drain(..) {
            let _ = std::fs::remove_file(&capture.path);
        }
    }
}

/// Removes capture files left by runs whose process is gone.
fn remove_stale_captures(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|name| name.strip_prefix(CAPTURE_PREFIX)) else { continue };
        let Some(pid) = rest.split('.').next().and_then(|pid| pid.parse::<i32>().ok()) else { continue };
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(Errno::ESRCH);
        if gone {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The temporary files of one job.
#[derive(Debug)]
pub struct JobFiles {
    /// Absolute path of the target.
    pub target: PathBuf,
    /// Absolute path passed as `$3`.
    pub dollar3: PathBuf,
    /// Capture of the script's stdout; `None` once it became the target.
    capture: Option<Capture>,
    /// Capture of the script's stderr, when it is logged.
    log: Option<Capture>,
    /// Stamp of the target before the script ran.
    before: Stamp,
    /// Length of the stdout capture when the script exited, set when it
    /// left processes that may still write there: only these bytes count.
    frozen_stdout: Option<u64>,
}

impl JobFiles {
    /// Chooses the temporary paths for building `target`, removing any left
    /// by an earlier run that died. The captures come with [`JobFiles::attach`].
    pub fn prepare(target: &Path) -> Result<JobFiles, OutputError> {
        let dollar3 = sibling(target, ".", ".redo3.tmp");
        remove_any(&dollar3).map_err(|err| io_error("remove the stale temporary file", &dollar3, err))?;
        let before = Stamp::read_target(target).map_err(|err| io_error("read", target, err))?;
        Ok(JobFiles { target: target.to_path_buf(), dollar3, capture: None, log: None, before, frozen_stdout: None })
    }

    /// Gives the job its stdout capture and, when stderr is logged, `log`.
    pub fn attach(&mut self, capture: Capture, log: Option<Capture>) {
        self.capture = Some(capture);
        self.log = log;
    }

    /// Notes how much the script wrote to stdout, at its exit: processes it
    /// left running share the capture, and what they write later must not
    /// reach the target.
    pub fn freeze_stdout(&mut self) {
        let size = self.capture.as_ref().and_then(|capture| capture.size().ok()).unwrap_or(0);
        self.frozen_stdout = Some(size);
    }

    /// Tells whether processes that the script left running shared its stdout.
    pub fn stdout_shared(&self) -> bool {
        self.frozen_stdout.is_some()
    }

    /// Returns the stdout capture, while the job owns it.
    pub fn capture(&self) -> Option<&Capture> {
        self.capture.as_ref()
    }

    /// Returns the stderr capture, when stderr is logged.
    pub fn log(&self) -> Option<&Capture> {
        self.log.as_ref()
    }

    /// Checks what a successful script produced and moves it into place.
    /// `shared_stdout` means that processes the job left running may still
    /// write to the capture file, which must then be copied, not renamed.
    pub fn install(&mut self, shared_stdout: bool) -> Result<Produced, OutputError> {
        let produced = self.inspect()?;
        if produced == Produced::Dollar3 {
            replace(&self.dollar3, &self.target)?;
            return Ok(Produced::Dollar3);
        }
        if produced == Produced::Stdout {
            self.stdout_into_place(shared_stdout)?;
            return Ok(Produced::Stdout);
        }
        remove_any(&self.target).map_err(|err| io_error("remove the stale target", &self.target, err))?;
        Ok(Produced::Nothing)
    }

    /// Tells what the script produced, or which rule it broke, without
    /// changing anything.
    pub fn inspect(&self) -> Result<Produced, OutputError> {
        let after = Stamp::read_target(&self.target).map_err(|err| io_error("read", &self.target, err))?;
        let dollar3 = Stamp::read_target(&self.dollar3).map_err(|err| io_error("read", &self.dollar3, err))?;
        let stdout_len = match (&self.capture, self.frozen_stdout) {
            (Some(_), Some(frozen)) => frozen,
            (Some(capture), None) => capture.size().map_err(|err| io_error("read", &capture.path, err))?,
            (None, _) => 0,
        };
        if after.exists() && after.kind != FileKind::Dir && after != self.before {
            return Err(OutputError::WroteTarget);
        }
        match (dollar3.exists(), stdout_len > 0) {
            (true, true) => Err(OutputError::BothOutputs),
            (true, false) => Ok(Produced::Dollar3),
            (false, true) => Ok(Produced::Stdout),
            (false, false) => Ok(Produced::Nothing),
        }
    }

    fn stdout_into_place(&mut self, shared_stdout: bool) -> Result<(), OutputError> {
        let Some(capture) = &self.capture else { return Ok(()) };
        if !self.target.parent().is_some_and(Path::is_dir) {
            let err = io::Error::new(io::ErrorKind::NotFound, "create it in the .do script before redo writes there");
            let dir = self.target.parent().unwrap_or(Path::new("/"));
            return Err(io_error("write the target: no such directory", dir, err));
        }
        if !shared_stdout {
            match std::fs::rename(&capture.path, &self.target) {
                Ok(()) => {
                    self.capture = None;
                    return Ok(());
                }
                // Another file system, or a directory in the way: copy, then replace.
                Err(err) if matches!(err.raw_os_error(), Some(libc::EXDEV | libc::EISDIR | libc::ENOTEMPTY)) => {}
                Err(err) => return Err(io_error("move the result into place at", &self.target, err)),
            }
        }
        let copy = sibling(&self.target, ".", ".redo1.tmp");
        if let Err(err) = copy_prefix(&capture.path, &copy, self.frozen_stdout) {
            let _ = std::fs::remove_file(&copy);
            return Err(io_error("copy stdout into", &self.target, err));
        }
        replace(&copy, &self.target)
    }

    /// Removes the temporary files of a failed or interrupted build.
    pub fn discard(&self) {
        let _ = remove_any(&self.dollar3);
        let _ = std::fs::remove_file(sibling(&self.target, ".", ".redo1.tmp"));
    }

    /// Returns the captures to the pool, or deletes them.
    pub fn release(&mut self, pool: &mut CapturePool, still_shared: bool) {
        for capture in [self.capture.take(), self.log.take()].into_iter().flatten() {
            pool.give_back(capture, still_shared);
        }
    }
}

/// Copies `source` to a new file `copy`: its first `len` bytes, or all of it.
fn copy_prefix(source: &Path, copy: &Path, len: Option<u64>) -> io::Result<()> {
    let Some(len) = len else {
        return std::fs::copy(source, copy).map(drop);
    };
    let from = File::open(source)?;
    let mut to = OpenOptions::new().write(true).create_new(true).mode(0o666).open(copy)?;
    io::copy(&mut io::Read::take(from, len), &mut to)?;
    Ok(())
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

    struct Setup {
        dir: tempfile::TempDir,
        pool: CapturePool,
    }

    impl Setup {
        fn new() -> Setup {
            let dir = tempfile::tempdir().expect("tempdir");
            let pool = CapturePool::new(dir.path().join(".redo/tmp"));
            Setup { dir, pool }
        }

        fn prepare(&mut self, name: &str) -> JobFiles {
            let capture = self.pool.take().expect("capture");
            let mut files = JobFiles::prepare(&self.dir.path().join(name)).expect("prepare");
            files.attach(capture, None);
            files
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Entries of the tree's top directory, without the state directory.
        fn listing(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
                .expect("ls")
                .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|name| name != ".redo")
                .collect();
            names.sort();
            names
        }
    }

    fn write_stdout(files: &JobFiles, data: &[u8]) {
        files.capture().expect("capture").for_child().expect("clone").write_all(data).expect("write");
    }

    #[test]
    fn dollar3_file_replaces_target() {
        let mut setup = Setup::new();
        std::fs::write(setup.path("out"), b"old").expect("write");
        let mut files = setup.prepare("out");
        std::fs::write(&files.dollar3, b"new").expect("write $3");
        assert_eq!(files.install(false).expect("install"), Produced::Dollar3);
        assert_eq!(std::fs::read(setup.path("out")).expect("read"), b"new");
        assert_eq!(setup.listing(), ["out"]);
    }

    #[test]
    fn stdout_becomes_target() {
        let mut setup = Setup::new();
        let mut files = setup.prepare("out");
        write_stdout(&files, b"printed\n");
        assert_eq!(files.install(false).expect("install"), Produced::Stdout);
        files.release(&mut setup.pool, false);
        assert_eq!(std::fs::read(setup.path("out")).expect("read"), b"printed\n");
        assert_eq!(setup.listing(), ["out"]);
    }

    #[test]
    fn empty_capture_is_reused() {
        let mut setup = Setup::new();
        let mut first = setup.prepare("a");
        std::fs::write(&first.dollar3, b"a").expect("write $3");
        first.install(false).expect("install");
        first.release(&mut setup.pool, false);
        let second = setup.prepare("b");
        assert_eq!(std::fs::read_dir(setup.path(".redo/tmp")).expect("ls").count(), 1);
        drop(second);
        drop(setup.pool);
    }

    #[test]
    fn stdout_is_copied_when_background_processes_hold_it() {
        let mut setup = Setup::new();
        let mut files = setup.prepare("out");
        let mut child = files.capture().expect("capture").for_child().expect("clone");
        child.write_all(b"first").expect("write");
        files.install(true).expect("install");
        files.release(&mut setup.pool, true);
        child.write_all(b" late").expect("late write");
        assert_eq!(std::fs::read(setup.path("out")).expect("read"), b"first");
        assert_eq!(std::fs::read_dir(setup.path(".redo/tmp")).expect("ls").count(), 0);
    }

    #[test]
    fn both_outputs_are_rejected() {
        let mut setup = Setup::new();
        let mut files = setup.prepare("out");
        write_stdout(&files, b"progress");
        std::fs::write(&files.dollar3, b"payload").expect("write $3");
        let err = files.install(false).expect_err("must fail");
        assert!(matches!(err, OutputError::BothOutputs));
        assert!(err.to_string().contains(">&2"));
        files.discard();
        files.release(&mut setup.pool, false);
        assert!(setup.listing().is_empty());
    }

    #[test]
    fn nothing_written_removes_stale_target() {
        let mut setup = Setup::new();
        std::fs::write(setup.path("clean"), b"stale").expect("write");
        let mut files = setup.prepare("clean");
        assert_eq!(files.install(false).expect("install"), Produced::Nothing);
        assert!(setup.listing().is_empty());
    }

    #[test]
    fn writing_the_target_directly_is_rejected() {
        let mut setup = Setup::new();
        let mut files = setup.prepare("out");
        std::fs::write(setup.path("out"), b"direct").expect("write");
        assert!(matches!(files.install(false), Err(OutputError::WroteTarget)));
    }

    #[test]
    fn directory_replaces_non_empty_directory() {
        let mut setup = Setup::new();
        let target = setup.path("outdir");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("alpha"), b"a").expect("write");
        let mut files = setup.prepare("outdir");
        std::fs::create_dir(&files.dollar3).expect("mkdir $3");
        std::fs::write(files.dollar3.join("gamma"), b"g").expect("write");
        files.install(false).expect("install");
        assert!(target.join("gamma").exists());
        assert!(!target.join("alpha").exists());
        assert_eq!(setup.listing(), ["outdir"]);
    }

    #[test]
    fn file_replaces_directory_and_symlink_replaces_file() {
        let mut setup = Setup::new();
        let target = setup.path("x");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("inside"), b"i").expect("write");
        let mut files = setup.prepare("x");
        std::fs::write(&files.dollar3, b"file now").expect("write");
        files.install(false).expect("install");
        assert_eq!(std::fs::read(&target).expect("read"), b"file now");

        let mut files = setup.prepare("x");
        std::os::unix::fs::symlink("elsewhere", &files.dollar3).expect("symlink");
        files.install(false).expect("install");
        assert_eq!(std::fs::read_link(&target).expect("readlink"), Path::new("elsewhere"));
    }

    #[test]
    fn stdout_over_directory_target() {
        let mut setup = Setup::new();
        let target = setup.path("x");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("inside"), b"i").expect("write");
        let mut files = setup.prepare("x");
        write_stdout(&files, b"text");
        files.install(false).expect("install");
        assert_eq!(std::fs::read(&target).expect("read"), b"text");
        assert_eq!(setup.listing(), ["x"]);
    }

    #[test]
    fn stdout_into_missing_directory_is_explained() {
        let mut setup = Setup::new();
        let mut files = setup.prepare("build/out");
        write_stdout(&files, b"data");
        let err = files.install(false).expect_err("must fail");
        assert!(err.to_string().contains("no such directory"), "{err}");
    }

    #[test]
    fn new_target_follows_umask_not_0600() {
        use std::os::unix::fs::PermissionsExt;
        let mut setup = Setup::new();
        let mut files = setup.prepare("out");
        write_stdout(&files, b"x");
        files.install(false).expect("install");
        let mode = std::fs::metadata(setup.path("out")).expect("stat").permissions().mode() & 0o777;
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let umask = status
            .lines()
            .find_map(|line| line.strip_prefix("Umask:"))
            .and_then(|value| u32::from_str_radix(value.trim(), 8).ok())
            .expect("umask");
        assert_eq!(mode, 0o666 & !umask);
    }

    #[test]
    fn capture_with_output_is_emptied_for_reuse() {
        let mut setup = Setup::new();
        let capture = setup.pool.take().expect("capture");
        let log = setup.pool.take().expect("log");
        let mut files = JobFiles::prepare(&setup.path("out")).expect("prepare");
        files.attach(capture, Some(log));
        let mut child = files.log().expect("log").for_child().expect("clone");
        child.write_all(b"first line\nsecond").expect("write");
        assert_eq!(files.log().expect("log").read_from(6, 100).expect("read"), b"line\nsecond");
        assert_eq!(files.log().expect("log").read_from(0, 5).expect("read"), b"first");
        std::fs::write(&files.dollar3, b"x").expect("write $3");
        files.install(false).expect("install");
        files.release(&mut setup.pool, false);
        drop(child);
        let reused = setup.pool.take().expect("capture");
        let mut next_child = reused.for_child().expect("clone");
        next_child.write_all(b"new").expect("write");
        assert_eq!(reused.read_from(0, 100).expect("read"), b"new");
    }

    #[test]
    fn stale_captures_of_dead_runs_are_removed() {
        let mut setup = Setup::new();
        let dir = setup.path(".redo/tmp");
        std::fs::create_dir_all(&dir).expect("mkdir");
        // pid_max is at most 2^22 on Linux, so this pid never runs.
        std::fs::write(dir.join("stdout.99999999.1"), b"").expect("write");
        let _files = setup.prepare("out");
        assert!(!dir.join("stdout.99999999.1").exists());
    }
}
