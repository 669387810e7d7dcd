//! Lexical path handling.
//!
//! redors names every file by a *key*: its path relative to the top of the
//! tree, or its absolute path when it lies outside the top. Keys are computed
//! lexically (`a/../b` is `b`), the way apenwarr/redo does, so a path that goes
//! through a symlinked directory keeps its own name.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Joins `name` onto `cwd` (unless `name` is absolute) and removes `.` and
/// `..` components without touching the file system.
pub fn absolute(cwd: &Path, name: &Path) -> PathBuf {
    if name.is_absolute() { normalize(name) } else { normalize(&cwd.join(name)) }
}

/// Removes `.` and `..` components of an absolute path lexically.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Prefix(prefix) => out.push(prefix.as_os_str()),
            Component::RootDir => out.push("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
        }
    }
    out
}

/// Returns the key of the absolute path `abs` in the tree rooted at `top`.
pub fn key(top: &Path, abs: &Path) -> PathBuf {
    match abs.strip_prefix(top) {
        Ok(rest) if !rest.as_os_str().is_empty() => rest.to_path_buf(),
        Ok(_) => PathBuf::from("."),
        Err(_) => abs.to_path_buf(),
    }
}

/// Returns the absolute path of a key in the tree rooted at `top`.
pub fn from_key(top: &Path, key: &Path) -> PathBuf {
    if key.is_absolute() {
        key.to_path_buf()
    } else if key == Path::new(".") {
        top.to_path_buf()
    } else {
        top.join(key)
    }
}

/// Returns `path` relative to the directory `base`, both absolute and
/// normalized, using `..` where needed (`/a/b/c` from `/a/d` is `../b/c`).
pub fn relative(path: &Path, base: &Path) -> PathBuf {
    let path_parts: Vec<&OsStr> = normal_parts(path);
    let base_parts: Vec<&OsStr> = normal_parts(base);
    let common = path_parts.iter().zip(&base_parts).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base_parts.len() {
        out.push("..");
    }
    for part in &path_parts[common..] {
        out.push(part);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn normal_parts(path: &Path) -> Vec<&OsStr> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(part) => Some(part),
            _ => None,
        })
        .collect()
}

/// Maximum length of a file name on Linux file systems, in bytes.
const NAME_MAX: usize = 255;

/// Returns the name of a sibling of `path` built from its file name:
/// `dir/name` becomes `dir/{prefix}name{suffix}`. When that is longer than a
/// file name may be, the middle is the start of `name` and a hash of all of
/// it, so that the sibling stays the same from one run to the next.
pub fn sibling(path: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let base = path.file_name().unwrap_or_else(|| OsStr::new("target"));
    let mut name = std::ffi::OsString::from(prefix);
    if prefix.len() + base.len() + suffix.len() <= NAME_MAX {
        name.push(base);
    } else {
        let hash = blake3::hash(base.as_bytes()).to_hex();
        let mark = format!("~{}", &hash[..16]);
        let keep = NAME_MAX - prefix.len() - suffix.len() - mark.len();
        name.push(OsStr::from_bytes(&base.as_bytes()[..keep]));
        name.push(mark);
    }
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sibling_of_a_long_name_fits() {
        let long = "a".repeat(250);
        let first = sibling(&Path::new("/d").join(&long), ".", ".redo3.tmp");
        let other = sibling(&Path::new("/d").join(format!("{long}b")), ".", ".redo3.tmp");
        let name = first.file_name().expect("name").as_bytes();
        assert_eq!(name.len(), NAME_MAX);
        assert!(name.starts_with(b".aaaa"));
        assert!(name.ends_with(b".redo3.tmp"));
        assert_ne!(first, other);
        assert_eq!(first, sibling(&Path::new("/d").join(&long), ".", ".redo3.tmp"));
    }

    #[test]
    fn absolute_removes_dot_and_dotdot() {
        let cwd = Path::new("/top/sub");
        assert_eq!(absolute(cwd, Path::new("../x/./y")), Path::new("/top/x/y"));
        assert_eq!(absolute(cwd, Path::new("/a/../b")), Path::new("/b"));
        assert_eq!(absolute(cwd, Path::new(".")), Path::new("/top/sub"));
    }

    #[test]
    fn dotdot_stops_at_root() {
        assert_eq!(normalize(Path::new("/../../x")), Path::new("/x"));
    }

    #[test]
    fn key_inside_and_outside_top() {
        let top = Path::new("/proj");
        assert_eq!(key(top, Path::new("/proj/src/a.o")), Path::new("src/a.o"));
        assert_eq!(key(top, Path::new("/usr/include/x.h")), Path::new("/usr/include/x.h"));
        assert_eq!(key(top, Path::new("/proj")), Path::new("."));
        assert_eq!(key(top, Path::new("/project2/a")), Path::new("/project2/a"));
        assert_eq!(from_key(top, Path::new("src/a.o")), Path::new("/proj/src/a.o"));
        assert_eq!(from_key(top, Path::new("/etc/x")), Path::new("/etc/x"));
        assert_eq!(from_key(top, Path::new(".")), Path::new("/proj"));
    }

    #[test]
    fn relative_walks_up_with_dotdot() {
        assert_eq!(relative(Path::new("/a/b/c"), Path::new("/a/d")), Path::new("../b/c"));
        assert_eq!(relative(Path::new("/a/b"), Path::new("/a/b")), Path::new("."));
        assert_eq!(relative(Path::new("/a/b/c"), Path::new("/a")), Path::new("b/c"));
        assert_eq!(relative(Path::new("/x"), Path::new("/a/b")), Path::new("../../x"));
    }

    #[test]
    fn sibling_keeps_directory() {
        assert_eq!(
            sibling(Path::new("/d/two  spaces.out"), ".", ".redo3.tmp"),
            Path::new("/d/.two  spaces.out.redo3.tmp")
        );
    }
}
