//! The file `get NAME DEST` writes before DEST is replaced: plaintext that must stay the
//! user's. On Linux it has no name at all until it is complete (`O_TMPFILE`, mode 0600): a
//! get killed mid-way leaves nothing behind, and no other user can plant a symlink where it
//! will be or open it while it fills. Where the file system cannot do that, it is a file of
//! a random name, created exclusively (a planted symlink is never followed), mode 0600, that
//! a failed get removes.

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
    /// A new, empty, private file in `dir` for `dest_name`.
    pub fn create(dir: &Path, dest_name: &str) -> Result<PartFile> {
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
        let named = tempfile::Builder::new()
            .prefix(&format!(".{dest_name}."))
            .suffix(PART_SUFFIX)
            .tempfile_in(dir)
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
