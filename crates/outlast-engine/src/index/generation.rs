//! The commit generation of one state folder's index, shared by every process that opens it:
//! two counters in a small file (`index.gen`) that each process maps into memory. A reader
//! checks them without a system call to know that nothing was committed since it last read a
//! name, so a name asked on every request (a site's page, an S3 GET) is answered from memory
//! instead of a SQLite read transaction (file locks and a global mutex), and still never
//! stale: a write through another gateway on this folder is seen by the next read.
//!
//! Every commit on a writer connection first raises `begun` (SQLite's commit hook, under the
//! database's write lock, so commits take numbers in the order they become visible) and, once
//! the commit is visible, raises `ended` to its number. `begun == ended` means every commit
//! numbered is visible and none is under way. A process that dies between the two leaves them
//! unequal: readers then read SQLite every time (correct, slower) until the next commit by
//! anyone raises `ended` past it.
//!
//! Every writer must keep this protocol, so the index schema that brought it (6) is refused by
//! older builds. The file is the owner's alone, like the database.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapRaw;

use crate::error::EngineError;

/// Bytes of the file: the two counters, each on a cache line of its own.
const FILE_LEN: u64 = 128;
const BEGUN_AT: usize = 0;
const ENDED_AT: usize = 64;

/// The mapped counters of one state folder.
pub(crate) struct Generation {
    map: MmapRaw,
}

impl Generation {
    /// Maps `index.gen` in `state_dir`, creating it (zeroed) if it is not there.
    pub(crate) fn open(state_dir: &Path) -> Result<Generation, EngineError> {
        let path = state_dir.join("index.gen");
        let io = |e| EngineError::io(format!("opening {}", path.display()), e);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(io)?;
        // Growing a file another process also grows to the same length changes nothing it
        // wrote: the counters are within the first bytes, and new bytes read as zero.
        if file.metadata().map_err(io)?.len() < FILE_LEN {
            file.set_len(FILE_LEN).map_err(io)?;
        }
        let map = MmapRaw::map_raw(&file).map_err(io)?;
        if (map.len() as u64) < FILE_LEN {
            return Err(EngineError::State(format!("{} is shorter than {FILE_LEN} bytes", path.display())));
        }
        Ok(Generation { map })
    }

    fn counter(&self, at: usize) -> &AtomicU64 {
        // SAFETY: the mapping is at least FILE_LEN bytes, page-aligned, and lives as long as
        // `self`; `at` is a multiple of 8 within it. Every process touches these bytes only
        // through atomic operations, which are coherent across processes on shared memory.
        unsafe { &*(self.map.as_mut_ptr().add(at) as *const AtomicU64) }
    }

    /// Numbers a commit about to become visible. Called by SQLite's commit hook, under the
    /// database's write lock.
    pub(crate) fn begin(&self) -> u64 {
        self.counter(BEGUN_AT).fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Says that commit `number` (and so every commit numbered before it, which held the write
    /// lock before it) is visible.
    pub(crate) fn end(&self, number: u64) {
        self.counter(ENDED_AT).fetch_max(number, Ordering::SeqCst);
    }

    /// The generation when every numbered commit is visible and none is under way: what a
    /// read taken between two equal answers reflects.
    pub(crate) fn settled(&self) -> Option<u64> {
        let ended = self.counter(ENDED_AT).load(Ordering::SeqCst);
        let begun = self.counter(BEGUN_AT).load(Ordering::SeqCst);
        (begun == ended).then_some(begun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two mappings of one folder (two processes) see each other's counters; a commit under
    /// way unsettles the generation until it ends, and a commit that never ends is settled by
    /// the next one to end.
    #[test]
    fn two_mappings_agree_and_a_dead_commit_is_settled_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Generation::open(dir.path()).unwrap(), Generation::open(dir.path()).unwrap());
        assert_eq!(b.settled(), Some(0));
        let n = a.begin();
        assert_eq!(b.settled(), None);
        a.end(n);
        assert_eq!(b.settled(), Some(1));
        // A writer that died after numbering its commit.
        let _dead = b.begin();
        assert_eq!(a.settled(), None);
        let next = a.begin();
        a.end(next);
        assert_eq!(b.settled(), Some(3));
        // An end that comes late does not take the counter back.
        a.end(1);
        assert_eq!(b.settled(), Some(3));
        drop((a, b));
        assert_eq!(Generation::open(dir.path()).unwrap().settled(), Some(3), "kept in the file");
    }
}
