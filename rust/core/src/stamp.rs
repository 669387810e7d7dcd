//! File stamps and content hashes.
//!
//! A stamp is the metadata that shows cheaply whether a file may have changed:
//! its type, inode, size, and modification and change times in nanoseconds.
//! When a stamp differs from the recorded one, redors confirms the change with
//! a BLAKE3 hash of the content, so touching a file without changing it does
//! not rebuild anything.

use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// A BLAKE3 digest.
pub type Hash = [u8; 32];

/// Kind of file that a path names, as `lstat` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileKind {
    /// Nothing exists at the path.
    #[default]
    Missing = 0,
    /// A regular file.
    File = 1,
    /// A directory.
    Dir = 2,
    /// A symbolic link; the other stamp fields describe what it points to.
    Symlink = 3,
    /// A device, socket or fifo.
    Other = 4,
}

impl FileKind {
    /// Converts the value stored in the database back to a kind.
    pub fn from_code(code: i64) -> FileKind {
        match code {
            1 => FileKind::File,
            2 => FileKind::Dir,
            3 => FileKind::Symlink,
            4 => FileKind::Other,
            _ => FileKind::Missing,
        }
    }
}

/// Metadata of a file that changes whenever its content may have changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    /// The file's type; [`FileKind::Missing`] when it does not exist.
    pub kind: FileKind,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
}

/// Files modified less than this long before their stamp was taken may change
/// again without a visible change of stamp (coarse file system clocks), so
/// their stamp is not trusted and their content is hashed again.
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

impl Stamp {
    /// Stamp of a path where nothing exists.
    pub const MISSING: Stamp = Stamp { kind: FileKind::Missing, ino: 0, size: 0, mtime_ns: 0, ctime_ns: 0 };

    /// Reads the stamp of a source. A symlink is followed for the metadata
    /// but keeps the kind [`FileKind::Symlink`], so editing the file behind
    /// it is a change. A dangling symlink describes the link itself.
    pub fn read(path: &Path) -> io::Result<Stamp> {
        let link_meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(err) if is_not_found(&err) => return Ok(Stamp::MISSING),
            Err(err) => return Err(err),
        };
        let file_type = link_meta.file_type();
        if file_type.is_symlink() {
            let meta = std::fs::metadata(path).unwrap_or(link_meta);
            return Ok(Stamp::from_metadata(FileKind::Symlink, &meta));
        }
        let kind = if file_type.is_file() {
            FileKind::File
        } else if file_type.is_dir() {
            FileKind::Dir
        } else {
            FileKind::Other
        };
        Ok(Stamp::from_metadata(kind, &link_meta))
    }

    /// Reads the stamp of a target: a symlink is described by itself, not by
    /// the file it points to, so that only a change of the link is a change
    /// of the target (see [`target_hash`]).
    pub fn read_target(path: &Path) -> io::Result<Stamp> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(err) if is_not_found(&err) => return Ok(Stamp::MISSING),
            Err(err) => return Err(err),
        };
        let file_type = meta.file_type();
        let kind = if file_type.is_symlink() {
            FileKind::Symlink
        } else if file_type.is_file() {
            FileKind::File
        } else if file_type.is_dir() {
            FileKind::Dir
        } else {
            FileKind::Other
        };
        Ok(Stamp::from_metadata(kind, &meta))
    }

    fn from_metadata(kind: FileKind, meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            kind,
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }

    /// Tells whether anything exists at the stamped path.
    pub fn exists(&self) -> bool {
        self.kind != FileKind::Missing
    }

    /// Tells whether a stamp taken at `seen_ns` may miss a later change
    /// because the file was modified too close to that moment.
    pub fn is_racy(&self, seen_ns: i64) -> bool {
        self.exists() && self.mtime_ns.max(self.ctime_ns) + RACY_WINDOW_NS > seen_ns
    }
}

/// Tells whether an I/O error means that the path does not exist.
pub fn is_not_found(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

/// Hashes the content of `path` as described by its stamp: the bytes of a
/// regular file, the link text and target content of a symlink. Directories,
/// special files and missing paths have no content hash.
pub fn content_hash(path: &Path, stamp: &Stamp) -> io::Result<Option<Hash>> {
    match stamp.kind {
        FileKind::File => hash_file(path).map(Some),
        FileKind::Symlink => {
            let mut hasher = blake3::Hasher::new();
            hasher.update(b"symlink\0");
            hasher.update(std::fs::read_link(path)?.as_os_str().as_bytes());
            hasher.update(b"\0");
            if std::fs::metadata(path).is_ok_and(|meta| meta.is_file()) {
                hasher.update(&hash_file(path)?);
            }
            Ok(Some(*hasher.finalize().as_bytes()))
        }
        FileKind::Missing | FileKind::Dir | FileKind::Other => Ok(None),
    }
}

/// Hashes a target as [`Stamp::read_target`] stamps it: a symlink by its link
/// text alone, any other file as [`content_hash`] does.
pub fn target_hash(path: &Path, stamp: &Stamp) -> io::Result<Option<Hash>> {
    if stamp.kind != FileKind::Symlink {
        return content_hash(path, stamp);
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"symlink\0");
    hasher.update(std::fs::read_link(path)?.as_os_str().as_bytes());
    Ok(Some(*hasher.finalize().as_bytes()))
}

/// Hashes the bytes of a regular file.
pub fn hash_file(path: &Path) -> io::Result<Hash> {
    let file = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    // update_reader reads through a buffer on the stack: no allocation per file.
    hasher.update_reader(file)?;
    Ok(*hasher.finalize().as_bytes())
}

/// Hashes a byte string, as `redo-stamp` does with its input.
pub fn hash_bytes(data: &[u8]) -> Hash {
    *blake3::hash(data).as_bytes()
}

/// Returns the wall-clock time in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn missing_file_has_missing_stamp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stamp = Stamp::read(&dir.path().join("nope")).expect("stamp");
        assert_eq!(stamp, Stamp::MISSING);
        assert!(!stamp.exists());
        let under_file = dir.path().join("f");
        std::fs::write(&under_file, b"x").expect("write");
        assert_eq!(Stamp::read(&under_file.join("child")).expect("stamp"), Stamp::MISSING);
    }

    #[test]
    fn stamp_changes_with_content_and_hash_confirms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.c");
        std::fs::write(&path, b"one").expect("write");
        let first = Stamp::read(&path).expect("stamp");
        assert_eq!(first.kind, FileKind::File);
        assert_eq!(first.size, 3);
        let hash_one = content_hash(&path, &first).expect("hash");
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b" two").expect("append");
        drop(file);
        let second = Stamp::read(&path).expect("stamp");
        assert_ne!(first, second);
        assert_ne!(hash_one, content_hash(&path, &second).expect("hash"));
    }

    #[test]
    fn symlink_hash_covers_link_text_and_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("x"), b"same").expect("write");
        std::fs::write(dir.path().join("y"), b"same").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("x", &link).expect("symlink");
        let stamp = Stamp::read(&link).expect("stamp");
        assert_eq!(stamp.kind, FileKind::Symlink);
        let to_x = content_hash(&link, &stamp).expect("hash");
        std::fs::remove_file(&link).expect("unlink");
        std::os::unix::fs::symlink("y", &link).expect("symlink");
        let to_y = content_hash(&link, &Stamp::read(&link).expect("stamp")).expect("hash");
        assert_ne!(to_x, to_y);
    }

    #[test]
    fn target_stamp_describes_the_link_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("src"), b"one").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("src", &link).expect("symlink");
        let before = Stamp::read_target(&link).expect("stamp");
        let hash_before = target_hash(&link, &before).expect("hash");
        std::fs::write(dir.path().join("src"), b"changed").expect("write");
        let after = Stamp::read_target(&link).expect("stamp");
        assert_eq!(before, after);
        assert_eq!(hash_before, target_hash(&link, &after).expect("hash"));
        assert_ne!(Stamp::read(&link).expect("stamp").size, before.size);
    }

    #[test]
    fn dangling_symlink_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("dangling");
        std::os::unix::fs::symlink("nowhere", &link).expect("symlink");
        let stamp = Stamp::read(&link).expect("stamp");
        assert_eq!(stamp.kind, FileKind::Symlink);
        assert!(content_hash(&link, &stamp).expect("hash").is_some());
    }

    #[test]
    fn recent_stamp_is_racy() {
        let stamp = Stamp { kind: FileKind::File, mtime_ns: 10_000_000_000, ..Stamp::MISSING };
        assert!(stamp.is_racy(10_500_000_000));
        assert!(!stamp.is_racy(10_000_000_000 + RACY_WINDOW_NS + 1));
        assert!(!Stamp::MISSING.is_racy(0));
    }
}
