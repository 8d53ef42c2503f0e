//! The file `get NAME DEST` writes before DEST is replaced: plaintext that must stay the
//! user's. On Linux it has no name at all until it is complete (`O_TMPFILE`, mode 0600): a
//! get killed mid-way leaves nothing behind, and no other user can plant a symlink where it
//! will be or open it while it fills. Where the file system cannot do that, it is a file of
//! a random name, created exclusively (a planted symlink is never followed), mode 0600, that
//! a failed get removes.
//!
//! A get killed with such a named file (or in the instant between naming an unnamed file and
//! renaming it over DEST) leaves it behind. Every part file is locked (`flock`) by the get
//! that writes it, for as long as it runs: the next get into the same folder removes each part
//! file of this shape that is the user's own, a regular file, and that no one holds locked.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A file being filled in `dir`, to become `DEST` there once complete.
pub struct PartFile {
    file: File,
    kind: Kind,
}

enum Kind {
    /// No name yet (Linux `O_TMPFILE`).
    Unnamed { dir: PathBuf },
    /// A random name, removed if dropped before [`PartFile::persist`].
    Named(tempfile::TempPath),
}

impl PartFile {
    /// A new, empty, private file in `dir` for `dest_name`, locked while it lives; part files
    /// dead gets left in `dir` are removed first.
    pub fn create(dir: &Path, dest_name: &str) -> Result<PartFile> {
        sweep_orphans(dir);
        let part = PartFile::create_unswept(dir, dest_name)?;
        // An unnamed file is locked before it is ever named (a named one as it is made).
        // Where the file system has no locks, a sweep cannot lock it either and leaves it be.
        if let Kind::Unnamed { .. } = part.kind {
            if let Err(e) = lock(&part.file) {
                tracing::debug!("cannot lock a temporary file in {}: {e}", dir.display());
            }
        }
        Ok(part)
    }

    fn create_unswept(dir: &Path, dest_name: &str) -> Result<PartFile> {
        // Naming it at the end goes through /proc (a chroot may lack it): without, fall back.
        #[cfg(target_os = "linux")]
        if Path::new("/proc/self/fd").is_dir() {
            use std::os::unix::fs::OpenOptionsExt;
            let unnamed = std::fs::OpenOptions::new().write(true).mode(0o600).custom_flags(libc::O_TMPFILE).open(dir);
            match unnamed {
                Ok(file) => return Ok(PartFile { file, kind: Kind::Unnamed { dir: dir.to_path_buf() } }),
                // Not every file system can (EOPNOTSUPP, or EISDIR from older kernels): fall back.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {}
                Err(e) => return Err(e).with_context(|| format!("cannot create a temporary file in {}", dir.display())),
            }
        }
        PartFile::create_named(dir, dest_name)
    }

    /// A file of a random name (where there can be no unnamed one).
    /// Locked as it is made, so that no sweep ever sees it unlocked.
    fn create_named(dir: &Path, dest_name: &str) -> Result<PartFile> {
        let named = tempfile::Builder::new()
            .prefix(&format!(".{dest_name}."))
            .suffix(PART_SUFFIX)
            .make_in(dir, |path| {
                let file = new_private_file(path)?;
                // Where the file system has no locks, a sweep cannot lock it either.
                if let Err(e) = lock(&file) {
                    tracing::debug!("cannot lock {}: {e}", path.display());
                }
                Ok(file)
            })
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        let (file, path) = named.into_parts();
        Ok(PartFile { file, kind: Kind::Named(path) })
    }

    /// The file to write to.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Gives the complete file `permissions` and puts it in place of `dest`, replacing what
    /// was there in one step (a reader of `dest` sees the old file or the new one).
    pub fn persist(self, dest: &Path, permissions: Option<std::fs::Permissions>) -> Result<()> {
        if let Some(p) = permissions {
            self.file.set_permissions(p).with_context(|| format!("cannot set the mode of {}", dest.display()))?;
        }
        match self.kind {
            Kind::Named(path) => {
                path.persist(dest).with_context(|| format!("cannot rename into {}", dest.display()))?;
            }
            Kind::Unnamed { dir } => {
                // A name is given only now, a random one beside `dest` (taken exclusively, as
                // the link fails on a name that exists), then renamed over it: a link cannot
                // replace a file, a rename can. Until renamed, dropping it removes the name.
                let prefix = format!(".{}.", dest.file_name().unwrap_or_default().to_string_lossy());
                let named = tempfile::Builder::new()
                    .prefix(&prefix)
                    .suffix(PART_SUFFIX)
                    .make_in(&dir, |path| link_unnamed(&self.file, path))
                    .with_context(|| format!("cannot name the file written in {}", dir.display()))?;
                named.persist(dest).map_err(|e| e.error).with_context(|| format!("cannot rename into {}", dest.display()))?;
            }
        }
        Ok(())
    }
}

/// The end of a part file's name: `.NAME.XXXXXX.outlast-part`, beside NAME.
const PART_SUFFIX: &str = ".outlast-part";
/// Random characters in a part file's name (`tempfile`'s default).
const RANDOM_CHARS: usize = 6;

/// Whether `name` has a part file's shape: `.NAME.XXXXXX.outlast-part`.
fn is_part_name(name: &str) -> bool {
    let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(PART_SUFFIX)) else { return false };
    let Some((dest, random)) = inner.rsplit_once('.') else { return false };
    !dest.is_empty() && random.len() == RANDOM_CHARS && random.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A new file at `path`, created exclusively (a name that exists, a planted symlink included,
/// fails), readable and writable by its owner only.
fn new_private_file(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path)
}

/// Holds an exclusive lock on `file` until it is closed: the sign that its get is alive.
#[cfg(unix)]
fn lock(file: &File) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: a valid open descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn lock(_file: &File) -> std::io::Result<()> {
    Ok(())
}

/// Removes the part files dead gets left in `dir`. Only a regular file of a part file's shape,
/// owned by this user, that can be locked (its get is gone) and that is still the file under
/// that name is removed; anything else is left alone, and a failure only leaves a file behind.
#[cfg(unix)]
fn sweep_orphans(dir: &Path) {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    // SAFETY: no arguments, no failure.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        if !entry.file_name().to_str().is_some_and(is_part_name) {
            continue;
        }
        let path = entry.path();
        // Never follows a symlink, never blocks on a pipe.
        let Ok(file) =
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY).open(&path)
        else {
            continue;
        };
        let Ok(held) = file.metadata() else { continue };
        if !held.is_file() || held.uid() != me || lock(&file).is_err() {
            continue;
        }
        // Still the same file under that name (not swapped since it was opened).
        let same = std::fs::symlink_metadata(&path).is_ok_and(|now| now.dev() == held.dev() && now.ino() == held.ino());
        if same && std::fs::remove_file(&path).is_ok() {
            tracing::info!(
                "removed {}, left by a get that did not finish",
                outlast_engine::display::escaped(&path.display().to_string())
            );
        }
    }
}

#[cfg(not(unix))]
fn sweep_orphans(_dir: &Path) {}

/// Gives the unnamed file `file` the name `to` (`linkat` through `/proc/self/fd`, as
/// open(2) describes for `O_TMPFILE`).
#[cfg(target_os = "linux")]
fn link_unnamed(file: &File, to: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::AsRawFd;
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("no NUL");
    let to = CString::new(to.as_os_str().as_bytes()).map_err(|_| std::io::Error::other("a path with NUL"))?;
    // SAFETY: both are valid NUL-terminated paths that live across the call.
    let r = unsafe { libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn link_unnamed(_file: &File, _to: &Path) -> std::io::Result<()> {
    unreachable!("unnamed files are made on Linux only")
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Write;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn part_file_names_have_one_shape() {
        assert!(is_part_name(".big.iso.Ab12xY.outlast-part"));
        for other in [
            ".big.iso.Ab12x.outlast-part",
            "big.Ab12xY.outlast-part",
            "..Ab12xY.outlast-part",
            ".big.Ab-2xY.outlast-part",
            ".big.Ab12xY.part",
        ] {
            assert!(!is_part_name(other), "{other}");
        }
    }

    #[test]
    fn a_dead_gets_part_file_is_swept_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A live get's part file (named: the fallback where O_TMPFILE is missing).
        let live = PartFile::create_named(d, "live").unwrap();
        let Kind::Named(live_path) = &live.kind else { panic!("named") };
        let live_name = live_path.file_name().unwrap().to_string_lossy().into_owned();
        // A dead get's: the same shape, unlocked, half written.
        std::fs::File::create(d.join(".dead.Zz9Aa1.outlast-part")).unwrap().write_all(b"plaintext").unwrap();
        // A symlink of that shape to a victim, a folder of that shape, and files of other shapes.
        std::fs::write(d.join("victim"), b"keep me").unwrap();
        std::os::unix::fs::symlink(d.join("victim"), d.join(".link.Qq1Ww2.outlast-part")).unwrap();
        std::fs::create_dir(d.join(".dir.Ee3Rr4.outlast-part")).unwrap();
        std::fs::write(d.join(".notes.outlast-part"), b"x").unwrap();
        std::fs::write(d.join("dead.Zz9Aa1.outlast-part"), b"x").unwrap();

        let _next = PartFile::create(d, "next").unwrap();
        let left = names_in(d);
        assert!(!left.contains(&".dead.Zz9Aa1.outlast-part".to_string()), "{left:?}");
        for kept in [
            live_name.as_str(),
            "victim",
            ".link.Qq1Ww2.outlast-part",
            ".dir.Ee3Rr4.outlast-part",
            ".notes.outlast-part",
            "dead.Zz9Aa1.outlast-part",
        ] {
            assert!(left.iter().any(|n| n == kept), "{kept} kept: {left:?}");
        }
        assert_eq!(std::fs::read(d.join("victim")).unwrap(), b"keep me");
        // Once its get is over (dropped without persisting, as a failure does), the file goes.
        drop(live);
        assert!(!names_in(d).contains(&live_name));
    }

    #[test]
    fn a_part_file_another_get_holds_survives_a_sweep_from_the_same_process() {
        // flock locks belong to the open file, so a second get of one process sees the lock.
        let dir = tempfile::tempdir().unwrap();
        let held = PartFile::create_named(dir.path(), "a").unwrap();
        let Kind::Named(path) = &held.kind else { panic!("named") };
        sweep_orphans(dir.path());
        assert!(path.exists());
    }
}
