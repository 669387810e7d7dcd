//! Finding the top of the tree: the directory whose `.redo/` holds the state.
//!
//! The search starts at the deepest directory that contains the current
//! directory and every requested target, and walks up:
//!
//! 1. a directory that has `.redo/` is the top;
//! 2. a directory that is the root of a version-control checkout (`.git`,
//!    `.hg`, ...) is the top, even without `.redo/` yet;
//! 3. the search never climbs into `$HOME` or `/` from below them, so a
//!    `.redo/` left there by an accidental run never captures the projects
//!    underneath;
//! 4. when nothing is found, the same search runs from the deepest
//!    directory that contains every target (`redo proj/x` typed in the parent
//!    of a checkout finds the checkout);
//! 5. when that finds nothing either, the first start directory is the top.

use std::path::{Path, PathBuf};

use crate::constants::STATE_DIR;
use crate::paths;

/// Entries that mark the root of a project checkout.
const PROJECT_MARKERS: &[&str] = &[".git", ".hg", ".svn", ".bzr", "_darcs", ".fossil", "_FOSSIL_", ".jj", ".pijul"];

/// Returns the deepest directory that contains all of `dirs` (absolute,
/// normalized); `/` when they share nothing.
pub fn common_ancestor(dirs: &[PathBuf]) -> PathBuf {
    let Some(first) = dirs.first() else {
        return PathBuf::from("/");
    };
    let mut common = first.clone();
    for dir in &dirs[1..] {
        while !dir.starts_with(&common) {
            if !common.pop() {
                return PathBuf::from("/");
            }
        }
    }
    common
}

/// Finds the top for a request of `targets` (relative to `cwd`, absolute
/// and normalized): `explicit` when given (relative to `cwd`), otherwise the
/// result of [`find_top`] from the deepest directory that holds `cwd` and
/// every target.
pub fn top_for_request(cwd: &Path, targets: &[PathBuf], explicit: Option<&Path>, home: Option<&Path>) -> PathBuf {
    if let Some(explicit) = explicit {
        return paths::absolute(cwd, explicit);
    }
    let mut dirs = vec![cwd.to_path_buf()];
    for target in targets {
        let abs = paths::absolute(cwd, target);
        dirs.push(abs.parent().map_or_else(|| abs.clone(), Path::to_path_buf));
    }
    let home = home.map(|home| paths::absolute(Path::new("/"), home));
    let start = common_ancestor(&dirs);
    if let Some(top) = search(&start, home.as_deref()) {
        return top;
    }
    if targets.is_empty() {
        return start;
    }
    let targets_start = common_ancestor(&dirs[1..]);
    if targets_start == start {
        return start;
    }
    search(&targets_start, home.as_deref()).unwrap_or(start)
}

/// Finds the top for a run that starts searching at `start` (absolute).
/// `home` is the user's home directory, if known.
pub fn find_top(start: &Path, home: Option<&Path>) -> PathBuf {
    search(start, home).unwrap_or_else(|| start.to_path_buf())
}

/// Walks up from `start` to the first directory that has `.redo/` or is the
/// root of a checkout, stopping below `home` and `/`.
fn search(start: &Path, home: Option<&Path>) -> Option<PathBuf> {
    let mut dir = start;
    loop {
        if dir.join(STATE_DIR).is_dir() || PROJECT_MARKERS.iter().any(|marker| dir.join(marker).exists()) {
            return Some(dir.to_path_buf());
        }
        match dir.parent() {
            Some(parent) if Some(parent) != home && parent != Path::new("/") => dir = parent,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_state_dir_wins() {
        let root = tempfile::tempdir().expect("tempdir");
        let project = root.path().join("p");
        std::fs::create_dir_all(project.join(".redo")).expect("mkdir");
        std::fs::create_dir_all(project.join("src/deep")).expect("mkdir");
        assert_eq!(find_top(&project.join("src/deep"), None), project);
    }

    #[test]
    fn checkout_root_is_top_without_state() {
        let root = tempfile::tempdir().expect("tempdir");
        let project = root.path().join("p");
        std::fs::create_dir_all(project.join(".git")).expect("mkdir");
        std::fs::create_dir_all(project.join("src")).expect("mkdir");
        assert_eq!(find_top(&project.join("src"), None), project);
    }

    #[test]
    fn state_in_home_does_not_capture_projects_below() {
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(home.path().join(".redo")).expect("mkdir");
        let project = home.path().join("proj/sub");
        std::fs::create_dir_all(&project).expect("mkdir");
        assert_eq!(find_top(&project, Some(home.path())), project);
        // A run started in the home directory itself still uses it.
        assert_eq!(find_top(home.path(), Some(home.path())), home.path());
    }

    #[test]
    fn targets_in_a_checkout_below_find_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let project = root.path().join("outer/proj");
        std::fs::create_dir_all(project.join(".git")).expect("mkdir");
        std::fs::create_dir_all(project.join("src")).expect("mkdir");
        let outer = root.path().join("outer");
        let home = Some(root.path());
        let top = |targets: &[&str]| {
            let targets: Vec<PathBuf> = targets.iter().map(PathBuf::from).collect();
            top_for_request(&outer, &targets, None, home)
        };
        assert_eq!(top(&["proj/t"]), project);
        assert_eq!(top(&["proj/src/a", "proj/b"]), project);
        // Targets outside the checkout, or none: the current directory.
        assert_eq!(top(&["proj/t", "other"]), outer);
        assert_eq!(top(&[]), outer);
    }

    #[test]
    fn nothing_found_means_start_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let start = root.path().join("a/b");
        std::fs::create_dir_all(&start).expect("mkdir");
        assert_eq!(find_top(&start, Some(root.path())), start);
    }

    #[test]
    fn request_top_covers_every_target() {
        let root = tempfile::tempdir().expect("tempdir");
        let project = root.path().join("p");
        std::fs::create_dir_all(project.join(".redo")).expect("mkdir");
        std::fs::create_dir_all(project.join("a/b")).expect("mkdir");
        let cwd = project.join("a/b");
        let targets = [PathBuf::from("x"), PathBuf::from("../../y")];
        assert_eq!(top_for_request(&cwd, &targets, None, None), project);
        let explicit = top_for_request(&cwd, &targets, Some(Path::new("..")), None);
        assert_eq!(explicit, project.join("a"));
    }

    #[test]
    fn common_ancestor_of_dirs() {
        let dirs = [PathBuf::from("/p/src/a"), PathBuf::from("/p/src/b/c"), PathBuf::from("/p/src")];
        assert_eq!(common_ancestor(&dirs), Path::new("/p/src"));
        assert_eq!(common_ancestor(&[PathBuf::from("/x"), PathBuf::from("/y")]), Path::new("/"));
    }
}
