//! The index a state folder holds: one SQLite file (`index.sqlite`, WAL mode) with a writer
//! connection and readers apart from it. Writes (which wait on fsync and on other processes'
//! locks) run on tokio's blocking pool, never on an async worker; reads run where they are
//! asked, on a free reader, which no writer holds up.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use outlast_codec::{VersionId, VersionStamp};
use outlast_provider::HealthStats;
use rusqlite::{params, Connection, OptionalExtension};

use super::generation::Generation;
use super::{
    Adopted, BlobCount, BlobRef, Fence, Index, IndexEntry, PendingWrite, Placed, Precondition, Recovered, ShardMove, BUSY_WAIT,
};
use crate::error::EngineError;

/// 1: objects, tombstones, blobs, pending. 2 adds `health` and `draining`; 3 adds `garbage`
/// and `markers` (each created by `CREATE ... IF NOT EXISTS`, so an older index is migrated
/// by opening it); 4 gives each pending write an owner, an expiry and a claimed flag (added
/// to an older table by [`migrate_pending`]); 5 keeps each object's placement in the clear
/// beside its sealed manifest (`placed`, JSON; NULL in rows an older build wrote, added by
/// [`migrate_placed`]). 6 changes no table: every writer numbers its commits in `index.gen`
/// ([`Generation`]), which readers trust to answer from memory, so builds that would not must
/// refuse the folder.
const SCHEMA_VERSION: i64 = 6;
/// Bytes of current versions remembered while nothing is committed ([`Db::get`]): the hot set
/// of a site or bucket (a small object's row is a few hundred bytes; a large object's sealed
/// manifest, with a check per segment, can be a hundred kilobytes).
const MEMO_BYTES: usize = 32 << 20;

/// The index in a state folder.
#[derive(Clone)]
pub struct SqliteIndex {
    db: Arc<Db>,
    /// Held (asynchronously) by the write on its way to the blocking pool. Writes take the
    /// one writer connection in turn anyway; without this, each write waiting for it holds a
    /// blocking thread of its own (repair at 10^4 objects: 72 s, and 51 s with it).
    writes: Arc<tokio::sync::Mutex<()>>,
}

impl SqliteIndex {
    /// Opens (creating or migrating if needed) the index in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<SqliteIndex, EngineError> {
        Ok(SqliteIndex { db: Arc::new(Db::open(state_dir)?), writes: Arc::default() })
    }

    /// Runs the read `f` on the reader connection, here and now. A read never waits for a
    /// writer (WAL mode) and takes microseconds on the local file, so sending it to the
    /// blocking pool would cost more than it does: measured at 10^4 objects, jobs that ask
    /// several reads per object ran up to 2-3x slower that way.
    fn read_now<T>(&self, f: impl FnOnce(&Db) -> Result<T, EngineError>) -> Result<T, EngineError> {
        f(&self.db)
    }

    /// Runs the write `f` on the blocking pool, one at a time: SQLite waits on disk and on
    /// other processes' locks.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let db = self.db.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return f(&db) };
        let _turn = self.writes.lock().await;
        match runtime.spawn_blocking(move || f(&db)).await {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(EngineError::State(format!("an index call was cancelled: {e}"))),
        }
    }
}

/// Reader connections: as many as async workers are likely to read at once (a gateway's
/// GETs on both cores waited on one reader's lock: 5% of a cached page's time in futex).
const READERS: usize = 4;

/// The SQLite database behind [`SqliteIndex`]: a writer, and readers apart from it so that
/// reads (WAL mode) go on while a commit is under way, and beside each other.
struct Db {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    /// Where the next read starts looking for a free reader.
    next_reader: AtomicUsize,
    /// Commits numbered by every process on this folder.
    generation: Arc<Generation>,
    /// The number of the last commit made on `writer` (by its commit hook).
    last_commit: Arc<AtomicU64>,
    /// Current versions read while the index stood at one generation.
    memo: Mutex<Memo>,
}

/// Names' current versions (or their absence) as read at `generation`: true while it is the
/// settled generation, since no commit, from any process, came after.
#[derive(Default)]
struct Memo {
    generation: u64,
    names: HashMap<String, Option<IndexEntry>>,
    /// Roughly what `names` holds, in bytes.
    bytes: usize,
}

/// The writer connection, held: once let go, whatever it committed is visible, and the
/// commit generation says so.
struct Writer<'a> {
    conn: MutexGuard<'a, Connection>,
    db: &'a Db,
}

impl Deref for Writer<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl DerefMut for Writer<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        // Nothing is under way on this connection now (a transaction not committed was rolled
        // back as it was dropped). Ending a number already ended changes nothing.
        self.db.generation.end(self.db.last_commit.load(Ordering::SeqCst));
    }
}

fn vid_of(bytes: Vec<u8>) -> VersionId {
    VersionId(bytes.try_into().unwrap_or([0; 16]))
}

impl Db {
    /// Opens (creating if needed) the index in `state_dir`.
    fn open(state_dir: &Path) -> Result<Db, EngineError> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| EngineError::io(format!("creating state folder {}", state_dir.display()), e))?;
        let path = state_dir.join("index.sqlite");
        // Names, sizes and plaintext hashes are the user's: the folder and the database (and
        // the journal files SQLite creates with the database's mode) are for the owner alone.
        keep_private(state_dir, 0o700)?;
        let generation = Arc::new(Generation::open(state_dir)?);
        let last_commit = Arc::new(AtomicU64::new(0));
        let conn = Connection::open(&path)?;
        let (numbering, last) = (generation.clone(), last_commit.clone());
        conn.commit_hook(Some(move || {
            last.store(numbering.begin(), Ordering::SeqCst);
            false // let it commit
        }));
        for file in
            [path.clone(), state_dir.join("index.sqlite-wal"), state_dir.join("index.sqlite-shm"), state_dir.join("index.gen")]
        {
            if file.exists() {
                keep_private(&file, 0o600)?;
            }
        }
        conn.busy_timeout(BUSY_WAIT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS objects (
                 name TEXT PRIMARY KEY, vid BLOB NOT NULL, time_ns INTEGER NOT NULL, size INTEGER NOT NULL,
                 content_type TEXT, etag TEXT NOT NULL, manifest BLOB NOT NULL, placed TEXT);
             CREATE TABLE IF NOT EXISTS tombstones (name TEXT PRIMARY KEY, vid BLOB NOT NULL, time_ns INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS blobs (
                 provider TEXT NOT NULL, blob TEXT NOT NULL, vid BLOB NOT NULL, size INTEGER NOT NULL,
                 PRIMARY KEY (provider, blob));
             CREATE INDEX IF NOT EXISTS blobs_by_vid ON blobs (vid);
             CREATE INDEX IF NOT EXISTS objects_by_vid ON objects (vid);
             CREATE INDEX IF NOT EXISTS tombstones_by_vid ON tombstones (vid);
             CREATE TABLE IF NOT EXISTS pending (
                 vid BLOB PRIMARY KEY, pid INTEGER NOT NULL, started_ns INTEGER NOT NULL, blobs TEXT NOT NULL,
                 owner TEXT NOT NULL DEFAULT '', expires_ns INTEGER NOT NULL DEFAULT 0,
                 claimed INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS health (provider TEXT PRIMARY KEY, stats TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS draining (provider TEXT PRIMARY KEY, target TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS garbage (
                 provider TEXT NOT NULL, blob TEXT NOT NULL, since_ns INTEGER NOT NULL, PRIMARY KEY (provider, blob));
             CREATE TABLE IF NOT EXISTS markers (provider TEXT PRIMARY KEY, written_ns INTEGER NOT NULL);",
        )?;
        let v: Option<i64> = conn.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| r.get(0)).optional()?;
        match v {
            None => {
                conn.execute("INSERT INTO meta (key, value) VALUES ('schema', ?1)", [SCHEMA_VERSION])?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(1..=5) => {
                migrate_pending(&conn)?;
                migrate_placed(&conn)?;
                conn.execute("UPDATE meta SET value = ?1 WHERE key = 'schema'", [SCHEMA_VERSION])?;
            }
            Some(other) => {
                return Err(EngineError::State(format!(
                    "index schema {other} is newer than this build understands ({SCHEMA_VERSION}); upgrade outlast"
                )))
            }
        }
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open(&path)?;
                reader.busy_timeout(BUSY_WAIT)?;
                reader.pragma_update(None, "query_only", true)?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<_, EngineError>>()?;
        generation.end(last_commit.load(Ordering::SeqCst));
        Ok(Db {
            writer: Mutex::new(conn),
            readers,
            next_reader: Default::default(),
            generation,
            last_commit,
            memo: Mutex::default(),
        })
    }

    /// The writer: every write, and reads a write depends on.
    fn conn(&self) -> Writer<'_> {
        Writer { conn: self.writer.lock().expect("index lock poisoned"), db: self }
    }

    /// The reader, for reads that decide nothing written after them.
    fn read(&self) -> MutexGuard<'_, Connection> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..READERS {
            if let Ok(free) = self.readers[(start + i) % READERS].try_lock() {
                return free;
            }
        }
        self.readers[start % READERS].lock().expect("index lock poisoned")
    }

    /// Records that a write of `vid` started, before any blob is written.
    fn begin_pending(&self, p: &PendingWrite) -> Result<(), EngineError> {
        let blobs =
            serde_json::to_string(&p.blobs.iter().map(|b| (&b.provider, &b.blob)).collect::<Vec<_>>()).expect("serializable");
        self.conn().execute(
            "INSERT INTO pending (vid, pid, started_ns, blobs, owner, expires_ns, claimed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![&p.vid.0[..], p.pid, p.started_ns as i64, blobs, p.owner, p.expires_ns as i64, p.claimed],
        )?;
        Ok(())
    }

    /// Pushes the expiry of `owner`'s pending write of `vid` to `expires_ns`: false if gc
    /// claimed it (or it is gone), and then it can never commit.
    fn renew_pending(&self, vid: &VersionId, owner: &str, expires_ns: u64) -> Result<bool, EngineError> {
        let changed = self.conn().execute(
            "UPDATE pending SET expires_ns = ?3 WHERE vid = ?1 AND owner = ?2 AND claimed = 0",
            params![&vid.0[..], owner, expires_ns as i64],
        )?;
        Ok(changed == 1)
    }

    /// Adds blobs to a pending write before they are written (the next part of a stream).
    fn add_pending_blobs(&self, vid: &VersionId, more: &[BlobRef]) -> Result<(), EngineError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let recorded: Option<String> =
            tx.query_row("SELECT blobs FROM pending WHERE vid = ?1", [&vid.0[..]], |r| r.get(0)).optional()?;
        let Some(recorded) = recorded else { return Err(lost_pending(vid)) };
        let mut blobs: Vec<(String, String)> = serde_json::from_str(&recorded).unwrap_or_default();
        blobs.extend(more.iter().map(|b| (b.provider.clone(), b.blob.clone())));
        let json = serde_json::to_string(&blobs).expect("serializable");
        tx.execute("UPDATE pending SET blobs = ?2 WHERE vid = ?1", params![&vid.0[..], json])?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets a pending write (after it committed, or after its blobs were removed).
    fn end_pending(&self, vid: &VersionId) -> Result<(), EngineError> {
        self.conn().execute("DELETE FROM pending WHERE vid = ?1", [&vid.0[..]])?;
        Ok(())
    }

    /// Lets go of a write that gave up with blobs it could not remove: no holder and expired, so
    /// the next gc claims it at once rather than after its expiry.
    fn release_pending(&self, vid: &VersionId) -> Result<(), EngineError> {
        self.conn().execute("UPDATE pending SET pid = 0, expires_ns = 1 WHERE vid = ?1 AND claimed = 0", [&vid.0[..]])?;
        Ok(())
    }

    /// Takes over the record `seen` of a write that is no longer live, so that its blobs can be
    /// removed: true if this caller claimed it (the write can then never commit). A holder
    /// that renewed it since `seen` was read keeps it. The record stays, marked, until its
    /// blobs are gone ([`Self::end_pending`]): a gc that cannot delete them all tries again
    /// next time.
    fn claim_pending(&self, seen: &PendingWrite) -> Result<bool, EngineError> {
        let claimed = self.conn().execute(
            "UPDATE pending SET claimed = 1 WHERE vid = ?1 AND claimed = 0 AND expires_ns = ?2",
            params![&seen.vid.0[..], seen.expires_ns as i64],
        )?;
        Ok(claimed == 1 || seen.claimed)
    }

    /// All pending writes.
    fn pending(&self) -> Result<Vec<PendingWrite>, EngineError> {
        let conn = self.read();
        let mut st = conn.prepare("SELECT vid, pid, started_ns, blobs, owner, expires_ns, claimed FROM pending")?;
        let rows = st.query_map([], |r| {
            let blobs: String = r.get(3)?;
            let list: Vec<(String, String)> = serde_json::from_str(&blobs).unwrap_or_default();
            Ok(PendingWrite {
                vid: vid_of(r.get(0)?),
                pid: r.get(1)?,
                started_ns: r.get::<_, i64>(2)? as u64,
                blobs: list.into_iter().map(|(provider, blob)| BlobRef { provider, blob, size: 0 }).collect(),
                owner: r.get(4)?,
                expires_ns: r.get::<_, i64>(5)? as u64,
                claimed: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Makes a new version current in one transaction: the object row, its blobs, the end of
    /// its pending record (which must still exist). Returns the blobs of the version it replaced (now garbage), or
    /// [`EngineError::Superseded`] if a concurrent writer already committed a newer version.
    fn commit(
        &self,
        entry: &IndexEntry,
        blobs: &[BlobRef],
        tombstone: bool,
        precondition: Precondition,
        fence: Option<&Fence>,
    ) -> Result<Vec<BlobRef>, EngineError> {
        let mut conn = self.conn();
        // Take the write lock up front: a deferred transaction that reads and then writes can
        // fail with SQLITE_BUSY when another process commits in between, without retrying.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let old: Option<(Vec<u8>, i64)> = tx
            .query_row("SELECT vid, time_ns FROM objects WHERE name = ?1", [&entry.name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let old_tomb: Option<(Vec<u8>, i64)> = tx
            .query_row("SELECT vid, time_ns FROM tombstones WHERE name = ?1", [&entry.name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let newest = old.iter().chain(old_tomb.iter()).map(|(_, t)| *t as u64).max();
        if newest.is_some_and(|t| t >= entry.stamp.time_ns) {
            // Another writer committed a newer version of this name meanwhile: this one lost.
            return Err(EngineError::Superseded { name: entry.name.clone(), size: entry.size, etag: entry.etag.clone() });
        }
        let current = old.as_ref().map(|(vid, _)| vid.as_slice());
        let holds = match precondition {
            Precondition::Any => true,
            Precondition::Absent => current.is_none(),
            Precondition::Current(vid) => current == Some(&vid.0[..]),
        };
        if !holds {
            return Err(EngineError::Conflict(entry.name.clone()));
        }
        if let Some(fence) = fence {
            let at: Option<Vec<u8>> =
                tx.query_row("SELECT vid FROM objects WHERE name = ?1", [&fence.name], |r| r.get(0)).optional()?;
            if at.as_deref() != Some(&fence.vid.0[..]) {
                return Err(EngineError::Fenced(fence.name.clone()));
            }
        }
        let mut garbage = Vec::new();
        for (vid, _) in old.iter().chain(old_tomb.iter()) {
            let mut st = tx.prepare("SELECT provider, blob, size FROM blobs WHERE vid = ?1")?;
            let rows =
                st.query_map([vid], |r| Ok(BlobRef { provider: r.get(0)?, blob: r.get(1)?, size: r.get::<_, i64>(2)? as u64 }))?;
            for r in rows {
                garbage.push(r?);
            }
            tx.execute("DELETE FROM blobs WHERE vid = ?1", [vid])?;
        }
        replace_version(&tx, entry, tombstone)?;
        let vid = &entry.stamp.vid.0[..];
        for b in blobs {
            tx.execute(
                "INSERT OR REPLACE INTO blobs (provider, blob, vid, size) VALUES (?1, ?2, ?3, ?4)",
                params![b.provider, b.blob, vid, b.size as i64],
            )?;
        }
        if tx.execute("DELETE FROM pending WHERE vid = ?1 AND claimed = 0", [vid])? != 1 {
            // gc took this write for a crashed one and removed its blobs: it must not commit.
            return Err(lost_pending(&entry.stamp.vid));
        }
        tx.commit()?;
        Ok(garbage)
    }

    /// Takes in versions recovered from the providers: each `entry` (a tombstone if `tombstone`)
    /// with its blobs found there by listing, on the providers in `listed`. A version older
    /// than the one recorded for its name changes nothing; the same version gets the newer
    /// sealed manifest (a higher placement revision) and its blob rows on `listed` providers
    /// replaced by what was found; a newer one replaces the old row, as a commit would. All in one
    /// transaction (one sync to disk, not one per name), so a recovery killed part-way leaves
    /// each name whole.
    fn adopt_all(&self, versions: &[Recovered], listed: &[String]) -> Result<Vec<Adopted>, EngineError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let outcomes = versions.iter().map(|v| adopt_in(&tx, v, listed)).collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        Ok(outcomes)
    }

    /// The current version of `name`, if any: from memory while nothing was committed since
    /// it was read (a site or S3 GET asks this on every request, and a SQLite read transaction
    /// was the largest cost of a cached page after the network).
    fn get(&self, name: &str) -> Result<Option<IndexEntry>, EngineError> {
        let settled = self.generation.settled();
        if let Some(generation) = settled {
            let memo = self.memo.lock().expect("memo lock poisoned");
            if let Some(known) = memo.names.get(name).filter(|_| memo.generation == generation) {
                return Ok(known.clone());
            }
        }
        // Cached statements: parsing the SQL each time cost more than the read.
        let row = self
            .read()
            .prepare_cached("SELECT name, vid, time_ns, size, content_type, etag, manifest, placed FROM objects WHERE name = ?1")?
            .query_row([name], row_to_entry)
            .optional()?;
        // Settled at the same generation before and after: no commit began in between, so the
        // read saw that generation's index.
        if let Some(generation) = settled.filter(|&g| self.generation.settled() == Some(g)) {
            let mut memo = self.memo.lock().expect("memo lock poisoned");
            if memo.generation < generation {
                *memo = Memo { generation, ..Memo::default() };
            }
            let bytes = name.len() + row.as_ref().map_or(0, |e| e.sealed_manifest.len() + e.name.len() + 128);
            if memo.generation == generation && memo.bytes + bytes <= MEMO_BYTES && !memo.names.contains_key(name) {
                memo.bytes += bytes;
                memo.names.insert(name.to_string(), row.clone());
            }
        }
        Ok(row)
    }

    /// Latest stamp known for `name`, live or deleted (new versions must be newer).
    fn latest_stamp(&self, name: &str) -> Result<Option<u64>, EngineError> {
        let conn = self.read();
        let t: Option<i64> = conn
            .prepare_cached(
                "SELECT MAX(t) FROM (SELECT time_ns AS t FROM objects WHERE name = ?1 UNION ALL SELECT time_ns FROM tombstones WHERE name = ?1)",
            )?
            .query_row([name], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(t.map(|t| t as u64))
    }

    /// Every blob referenced on `provider`.
    fn blobs_on(&self, provider: &str) -> Result<Vec<BlobRef>, EngineError> {
        let conn = self.read();
        let mut st = conn.prepare("SELECT provider, blob, size FROM blobs WHERE provider = ?1")?;
        let rows =
            st.query_map([provider], |r| Ok(BlobRef { provider: r.get(0)?, blob: r.get(1)?, size: r.get::<_, i64>(2)? as u64 }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` blobs recorded on `provider`, in name order after `after`: how jobs walk
    /// a provider's blobs without holding them all.
    fn blobs_on_page(&self, provider: &str, after: Option<&str>, limit: usize) -> Result<Vec<BlobRef>, EngineError> {
        let conn = self.read();
        let mut st = conn.prepare_cached(
            "SELECT provider, blob, size FROM blobs WHERE provider = ?1 AND (?2 IS NULL OR blob > ?2) ORDER BY blob LIMIT ?3",
        )?;
        let rows = st.query_map(params![provider, after, limit as i64], |r| {
            Ok(BlobRef { provider: r.get(0)?, blob: r.get(1)?, size: r.get::<_, i64>(2)? as u64 })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many blobs are recorded on `provider`, how many of them are shards, and their
    /// bytes (without holding them).
    fn count_blobs_on(&self, provider: &str) -> Result<BlobCount, EngineError> {
        let (blobs, shards, bytes): (i64, i64, i64) = self.read().query_row(
            "SELECT COUNT(*), COALESCE(SUM(blob LIKE 's/%'), 0), COALESCE(SUM(size), 0) FROM blobs WHERE provider = ?1",
            [provider],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(BlobCount { blobs: blobs as u64, shards: shards as u64, bytes: bytes as u64 })
    }

    /// At most `count` of the blobs recorded on `provider`, spread evenly over them in name
    /// order (a probe of a few, whatever the provider holds).
    fn sample_blobs_on(&self, provider: &str, count: usize) -> Result<Vec<BlobRef>, EngineError> {
        let total = self.count_blobs_on(provider)?.blobs as usize;
        let conn = self.read();
        let mut st =
            conn.prepare("SELECT provider, blob, size FROM blobs WHERE provider = ?1 ORDER BY blob LIMIT 1 OFFSET ?2")?;
        let picks: Vec<usize> = if total <= count {
            (0..total).collect()
        } else {
            (0..count).map(|i| i * (total - 1) / (count - 1).max(1)).collect()
        };
        let mut out = Vec::with_capacity(picks.len());
        for at in picks {
            let row = st
                .query_row(params![provider, at as i64], |r| {
                    Ok(BlobRef { provider: r.get(0)?, blob: r.get(1)?, size: r.get::<_, i64>(2)? as u64 })
                })
                .optional()?;
            out.extend(row);
        }
        Ok(out)
    }
}

/// What repair and scrub change: which blobs of committed versions exist.
impl Db {
    /// Every blob recorded for version `vid`.
    fn blobs_of(&self, vid: &VersionId) -> Result<Vec<BlobRef>, EngineError> {
        let conn = self.read();
        let mut st = conn.prepare("SELECT provider, blob, size FROM blobs WHERE vid = ?1")?;
        let rows = st.query_map([&vid.0[..]], |r| {
            Ok(BlobRef { provider: r.get(0)?, blob: r.get(1)?, size: r.get::<_, i64>(2)? as u64 })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a blob written for object version `vid` (a rebuilt or moved shard, a manifest
    /// copy) if the version's current sealed manifest is still `placed_by`, the one the blob was
    /// written for; returns whether it was recorded. A version replaced, removed or moved
    /// meanwhile gets nothing, and the blob is garbage for gc.
    fn add_blob(&self, vid: &VersionId, placed_by: &[u8], b: &BlobRef) -> Result<bool, EngineError> {
        self.add_blob_if("SELECT COUNT(*) FROM objects WHERE vid = ?1 AND manifest = ?2", params![&vid.0[..], placed_by], vid, b)
    }

    /// Records a copy of tombstone `vid` if it is still the current version of its name;
    /// returns whether it was recorded.
    fn add_tombstone_copy(&self, vid: &VersionId, b: &BlobRef) -> Result<bool, EngineError> {
        self.add_blob_if("SELECT COUNT(*) FROM tombstones WHERE vid = ?1", params![&vid.0[..]], vid, b)
    }

    /// Records `b` for `vid` in one transaction with the check `count_sql` (a count that must
    /// not be 0).
    fn add_blob_if(&self, count_sql: &str, p: impl rusqlite::Params, vid: &VersionId, b: &BlobRef) -> Result<bool, EngineError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row(count_sql, p, |r| r.get(0))?;
        if current == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT OR REPLACE INTO blobs (provider, blob, vid, size) VALUES (?1, ?2, ?3, ?4)",
            params![b.provider, b.blob, &vid.0[..], b.size as i64],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Whether `vid` is still the current version of its name (an object or a tombstone).
    fn is_current(&self, vid: &VersionId) -> Result<bool, EngineError> {
        let n: i64 = self
            .read()
            .prepare_cached(
                "SELECT (SELECT COUNT(*) FROM objects WHERE vid = ?1) + (SELECT COUNT(*) FROM tombstones WHERE vid = ?1)",
            )?
            .query_row([&vid.0[..]], |r| r.get(0))?;
        Ok(n > 0)
    }

    /// Forgets a blob found missing or damaged, so it counts as repair debt; returns whether
    /// it was recorded (a move or replacement may have dropped it meanwhile: then it was no
    /// loss).
    fn forget_blob(&self, provider: &str, blob: &str) -> Result<bool, EngineError> {
        Ok(self.conn().execute("DELETE FROM blobs WHERE provider = ?1 AND blob = ?2", [provider, blob])? > 0)
    }

    /// Forgets each of `blobs` that is still recorded as it is given (same size), in one
    /// transaction; returns how many were.
    fn forget_blobs(&self, blobs: &[BlobRef]) -> Result<u64, EngineError> {
        if blobs.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut forgotten = 0;
        {
            let mut st = tx.prepare_cached("DELETE FROM blobs WHERE provider = ?1 AND blob = ?2 AND size = ?3")?;
            for b in blobs {
                forgotten += st.execute(params![b.provider, b.blob, b.size as i64])? as u64;
            }
        }
        tx.commit()?;
        Ok(forgotten)
    }

    /// Up to `limit` rows of the object table whose names start with `prefix`, in name order,
    /// after `after`: how jobs walk the store without holding every row.
    fn objects_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<IndexEntry>, EngineError> {
        let conn = self.read();
        let mut st = conn.prepare_cached(
            "SELECT name, vid, time_ns, size, content_type, etag, manifest, placed FROM objects
             WHERE name >= ?1 AND (?2 IS NULL OR name > ?2) AND substr(name, 1, length(?1)) = ?1
             ORDER BY name LIMIT ?3",
        )?;
        let rows = st.query_map(params![prefix, after, limit as i64], row_to_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` tombstones in name order after `after`.
    fn tombstones_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, VersionStamp)>, EngineError> {
        let conn = self.read();
        let mut st = conn
            .prepare_cached("SELECT name, vid, time_ns FROM tombstones WHERE (?1 IS NULL OR name > ?1) ORDER BY name LIMIT ?2")?;
        let rows = st.query_map(params![after, limit as i64], |r| {
            Ok((r.get::<_, String>(0)?, VersionStamp { vid: vid_of(r.get(1)?), time_ns: r.get::<_, i64>(2)? as u64 }))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The plaintext bytes of every current object (a job's progress total).
    fn total_size(&self) -> Result<u64, EngineError> {
        let total: i64 = self.read().query_row("SELECT COALESCE(SUM(size), 0) FROM objects", [], |r| r.get(0))?;
        Ok(total as u64)
    }

    /// Whether the index records any version at all, current or deleted.
    fn has_versions(&self) -> Result<bool, EngineError> {
        let conn = self.read();
        let any =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM objects) OR EXISTS (SELECT 1 FROM tombstones)", [], |r| r.get(0))?;
        Ok(any)
    }

    /// Providers being evacuated, with their targets: new writes are not placed on them.
    fn draining(&self) -> Result<Vec<(String, String)>, EngineError> {
        let conn = self.read();
        let mut st = conn.prepare("SELECT provider, target FROM draining ORDER BY provider")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks `provider` as being evacuated to `target`.
    fn set_draining(&self, provider: &str, target: &str) -> Result<(), EngineError> {
        self.conn().execute("INSERT OR REPLACE INTO draining (provider, target) VALUES (?1, ?2)", [provider, target])?;
        Ok(())
    }

    /// Forgets that `provider` is being evacuated (it was removed from the configuration).
    fn clear_draining(&self, provider: &str) -> Result<(), EngineError> {
        self.conn().execute("DELETE FROM draining WHERE provider = ?1", [provider])?;
        Ok(())
    }

    /// Switches version `vid` of `name` from the sealed manifest `was` to `now`, in which
    /// `from`'s shards moved: `from`'s blobs of the version are forgotten, and so is every copy
    /// of `manifest_blob` (holders that missed the rewrite keep the old revision: repair
    /// rewrites them); `added` (moved shards, new manifest copies) is recorded, all in one
    /// transaction. Returns false (changing nothing) when the current manifest is no longer
    /// `was` (replaced, removed, or rewritten by another move).
    fn move_shards(&self, m: &ShardMove) -> Result<bool, EngineError> {
        let ShardMove { name, vid, was, now, from, manifest_blob, added, placed } = m;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let v = &vid.0[..];
        let changed = tx.execute(
            "UPDATE objects SET manifest = ?4, placed = ?5 WHERE name = ?1 AND vid = ?2 AND manifest = ?3",
            params![name, v, was, now, placed_json(Some(placed))],
        )?;
        if changed != 1 {
            return Ok(false);
        }
        tx.execute("DELETE FROM blobs WHERE provider = ?1 AND vid = ?2", params![from, v])?;
        tx.execute("DELETE FROM blobs WHERE blob = ?1 AND vid = ?2", params![manifest_blob, v])?;
        for b in added {
            tx.execute(
                "INSERT OR REPLACE INTO blobs (provider, blob, vid, size) VALUES (?1, ?2, ?3, ?4)",
                params![b.provider, b.blob, v, b.size as i64],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Records blobs this store made garbage but could not delete (a replaced version, a
    /// moved shard's old copy): gc may delete them after its grace period, while blobs it
    /// knows nothing of wait at least its floor (they may be a write in progress elsewhere).
    fn note_garbage(&self, blobs: &[BlobRef], since_ns: u64) -> Result<(), EngineError> {
        if blobs.is_empty() {
            return Ok(()); // no transaction, no fsync: the common case of every put
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for b in blobs {
            tx.execute(
                "INSERT OR IGNORE INTO garbage (provider, blob, since_ns) VALUES (?1, ?2, ?3)",
                params![b.provider, b.blob, since_ns as i64],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every (provider, blob) recorded as garbage.
    fn garbage(&self) -> Result<std::collections::HashSet<(String, String)>, EngineError> {
        let conn = self.read();
        let mut st = conn.prepare("SELECT provider, blob FROM garbage")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets a garbage record once its blob is gone.
    fn forget_garbage(&self, provider: &str, blob: &str) -> Result<(), EngineError> {
        self.conn().execute("DELETE FROM garbage WHERE provider = ?1 AND blob = ?2", [provider, blob])?;
        Ok(())
    }

    /// Whether blob name `blob` is referenced on any provider by a committed version, or
    /// named by a write in progress, now. Names do not depend on the provider, so a name
    /// recorded anywhere is live everywhere (two providers may be one location).
    fn is_name_recorded(&self, blob: &str) -> Result<bool, EngineError> {
        let referenced: i64 = self.read().query_row("SELECT COUNT(*) FROM blobs WHERE blob = ?1", [blob], |r| r.get(0))?;
        if referenced > 0 {
            return Ok(true);
        }
        Ok(self.pending()?.iter().any(|p| p.blobs.iter().any(|b| b.blob == blob)))
    }

    /// Records that `provider`'s location holds this store's identity marker: from now on a
    /// location without one is not taken for it. Already recorded: nothing is written (every
    /// command checks every provider it uses, and a write here costs an fsync).
    fn record_marker(&self, provider: &str, written_ns: u64) -> Result<(), EngineError> {
        let known: i64 = self.conn().query_row("SELECT COUNT(*) FROM markers WHERE provider = ?1", [provider], |r| r.get(0))?;
        if known > 0 {
            return Ok(());
        }
        self.conn().execute(
            "INSERT OR REPLACE INTO markers (provider, written_ns) VALUES (?1, ?2)",
            params![provider, written_ns as i64],
        )?;
        Ok(())
    }

    /// Whether this index has known `provider` to hold this store's data: a marker recorded, or
    /// a blob. An empty location it never knew may be a provider never used yet; one it knew
    /// that lost its marker was wiped or replaced.
    fn knows_provider(&self, provider: &str) -> Result<bool, EngineError> {
        let n: i64 = self.read().query_row(
            "SELECT (SELECT COUNT(*) FROM markers WHERE provider = ?1) + (SELECT COUNT(*) FROM blobs WHERE provider = ?1)",
            [provider],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Health observations saved by earlier runs, by provider name.
    fn load_health(&self) -> Result<Vec<(String, HealthStats)>, EngineError> {
        let conn = self.read();
        let mut st = conn.prepare("SELECT provider, stats FROM health")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, json) = row?;
            // Stats from an incompatible build are dropped rather than failing the store.
            if let Ok(stats) = serde_json::from_str(&json) {
                out.push((name, stats));
            }
        }
        Ok(out)
    }

    /// Saves health observations for the next run; `stats` names every configured provider,
    /// and rows of providers no longer configured are dropped.
    fn save_health(&self, stats: &[(String, HealthStats)], busy_wait: Duration) -> Result<(), EngineError> {
        let mut conn = self.conn();
        conn.busy_timeout(busy_wait)?;
        let saved = Self::save_health_in(&mut conn, stats);
        conn.busy_timeout(BUSY_WAIT)?;
        saved
    }

    fn save_health_in(conn: &mut Connection, stats: &[(String, HealthStats)]) -> Result<(), EngineError> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let names: Vec<String> = {
            let mut st = tx.prepare("SELECT provider FROM health")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for gone in names.iter().filter(|n| !stats.iter().any(|(s, _)| s == *n)) {
            tx.execute("DELETE FROM health WHERE provider = ?1", [gone])?;
        }
        for (name, h) in stats {
            let json = serde_json::to_string(h).expect("serializable");
            tx.execute("INSERT OR REPLACE INTO health (provider, stats) VALUES (?1, ?2)", [name.as_str(), json.as_str()])?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Each call clones what it borrows and runs the database's method on the blocking pool.
#[async_trait]
impl Index for SqliteIndex {
    async fn begin_pending(&self, p: &PendingWrite) -> Result<(), EngineError> {
        let p = p.clone();
        self.run(move |db| db.begin_pending(&p)).await
    }
    async fn renew_pending(&self, vid: &VersionId, owner: &str, expires_ns: u64) -> Result<bool, EngineError> {
        let (vid, owner) = (*vid, owner.to_owned());
        self.run(move |db| db.renew_pending(&vid, &owner, expires_ns)).await
    }
    async fn add_pending_blobs(&self, vid: &VersionId, more: &[BlobRef]) -> Result<(), EngineError> {
        let (vid, more) = (*vid, more.to_vec());
        self.run(move |db| db.add_pending_blobs(&vid, &more)).await
    }
    async fn end_pending(&self, vid: &VersionId) -> Result<(), EngineError> {
        let vid = *vid;
        self.run(move |db| db.end_pending(&vid)).await
    }
    async fn release_pending(&self, vid: &VersionId) -> Result<(), EngineError> {
        let vid = *vid;
        self.run(move |db| db.release_pending(&vid)).await
    }
    async fn claim_pending(&self, seen: &PendingWrite) -> Result<bool, EngineError> {
        let seen = seen.clone();
        self.run(move |db| db.claim_pending(&seen)).await
    }
    async fn pending(&self) -> Result<Vec<PendingWrite>, EngineError> {
        self.read_now(|db| db.pending())
    }
    async fn commit(
        &self,
        entry: &IndexEntry,
        blobs: &[BlobRef],
        tombstone: bool,
        precondition: Precondition,
        fence: Option<&Fence>,
    ) -> Result<Vec<BlobRef>, EngineError> {
        let (entry, blobs, fence) = (entry.clone(), blobs.to_vec(), fence.cloned());
        self.run(move |db| db.commit(&entry, &blobs, tombstone, precondition, fence.as_ref())).await
    }
    async fn adopt_all(&self, versions: &[Recovered], listed: &[String]) -> Result<Vec<Adopted>, EngineError> {
        let (versions, listed) = (versions.to_vec(), listed.to_vec());
        self.run(move |db| db.adopt_all(&versions, &listed)).await
    }
    async fn get(&self, name: &str) -> Result<Option<IndexEntry>, EngineError> {
        let name = name.to_owned();
        self.read_now(|db| db.get(&name))
    }
    async fn latest_stamp(&self, name: &str) -> Result<Option<u64>, EngineError> {
        let name = name.to_owned();
        self.read_now(|db| db.latest_stamp(&name))
    }
    async fn is_current(&self, vid: &VersionId) -> Result<bool, EngineError> {
        let vid = *vid;
        self.read_now(|db| db.is_current(&vid))
    }
    async fn objects_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<IndexEntry>, EngineError> {
        let (prefix, after) = (prefix.to_owned(), after.map(str::to_owned));
        self.read_now(|db| db.objects_page(&prefix, after.as_deref(), limit))
    }
    async fn tombstones_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, VersionStamp)>, EngineError> {
        let after = after.map(str::to_owned);
        self.read_now(|db| db.tombstones_page(after.as_deref(), limit))
    }
    async fn total_size(&self) -> Result<u64, EngineError> {
        self.read_now(|db| db.total_size())
    }
    async fn has_versions(&self) -> Result<bool, EngineError> {
        self.read_now(|db| db.has_versions())
    }
    async fn move_shards(&self, moved: &ShardMove) -> Result<bool, EngineError> {
        let moved = moved.clone();
        self.run(move |db| db.move_shards(&moved)).await
    }
    async fn blobs_of(&self, vid: &VersionId) -> Result<Vec<BlobRef>, EngineError> {
        let vid = *vid;
        self.read_now(|db| db.blobs_of(&vid))
    }
    async fn blobs_on(&self, provider: &str) -> Result<Vec<BlobRef>, EngineError> {
        let provider = provider.to_owned();
        self.read_now(|db| db.blobs_on(&provider))
    }
    async fn blobs_on_page(&self, provider: &str, after: Option<&str>, limit: usize) -> Result<Vec<BlobRef>, EngineError> {
        let (provider, after) = (provider.to_owned(), after.map(str::to_owned));
        self.read_now(|db| db.blobs_on_page(&provider, after.as_deref(), limit))
    }
    async fn count_blobs_on(&self, provider: &str) -> Result<BlobCount, EngineError> {
        let provider = provider.to_owned();
        self.read_now(|db| db.count_blobs_on(&provider))
    }
    async fn sample_blobs_on(&self, provider: &str, count: usize) -> Result<Vec<BlobRef>, EngineError> {
        let provider = provider.to_owned();
        self.read_now(|db| db.sample_blobs_on(&provider, count))
    }
    async fn add_blob(&self, vid: &VersionId, placed_by: &[u8], b: &BlobRef) -> Result<bool, EngineError> {
        let (vid, placed_by, b) = (*vid, placed_by.to_vec(), b.clone());
        self.run(move |db| db.add_blob(&vid, &placed_by, &b)).await
    }
    async fn add_tombstone_copy(&self, vid: &VersionId, b: &BlobRef) -> Result<bool, EngineError> {
        let (vid, b) = (*vid, b.clone());
        self.run(move |db| db.add_tombstone_copy(&vid, &b)).await
    }
    async fn forget_blob(&self, provider: &str, blob: &str) -> Result<bool, EngineError> {
        let (provider, blob) = (provider.to_owned(), blob.to_owned());
        self.run(move |db| db.forget_blob(&provider, &blob)).await
    }
    async fn forget_blobs(&self, blobs: &[BlobRef]) -> Result<u64, EngineError> {
        let blobs = blobs.to_vec();
        self.run(move |db| db.forget_blobs(&blobs)).await
    }
    async fn is_name_recorded(&self, blob: &str) -> Result<bool, EngineError> {
        let blob = blob.to_owned();
        self.read_now(|db| db.is_name_recorded(&blob))
    }
    async fn note_garbage(&self, blobs: &[BlobRef], since_ns: u64) -> Result<(), EngineError> {
        if blobs.is_empty() {
            return Ok(()); // every put's common case: not even a trip to the pool
        }
        let blobs = blobs.to_vec();
        self.run(move |db| db.note_garbage(&blobs, since_ns)).await
    }
    async fn garbage(&self) -> Result<std::collections::HashSet<(String, String)>, EngineError> {
        self.read_now(|db| db.garbage())
    }
    async fn forget_garbage(&self, provider: &str, blob: &str) -> Result<(), EngineError> {
        let (provider, blob) = (provider.to_owned(), blob.to_owned());
        self.run(move |db| db.forget_garbage(&provider, &blob)).await
    }
    async fn draining(&self) -> Result<Vec<(String, String)>, EngineError> {
        self.read_now(|db| db.draining())
    }
    async fn set_draining(&self, provider: &str, target: &str) -> Result<(), EngineError> {
        let (provider, target) = (provider.to_owned(), target.to_owned());
        self.run(move |db| db.set_draining(&provider, &target)).await
    }
    async fn clear_draining(&self, provider: &str) -> Result<(), EngineError> {
        let provider = provider.to_owned();
        self.run(move |db| db.clear_draining(&provider)).await
    }
    async fn record_marker(&self, provider: &str, written_ns: u64) -> Result<(), EngineError> {
        let provider = provider.to_owned();
        self.run(move |db| db.record_marker(&provider, written_ns)).await
    }
    async fn knows_provider(&self, provider: &str) -> Result<bool, EngineError> {
        let provider = provider.to_owned();
        self.read_now(|db| db.knows_provider(&provider))
    }
    async fn load_health(&self) -> Result<Vec<(String, HealthStats)>, EngineError> {
        self.read_now(|db| db.load_health())
    }
    async fn save_health(&self, stats: &[(String, HealthStats)], busy_wait: Duration) -> Result<(), EngineError> {
        let stats = stats.to_vec();
        self.run(move |db| db.save_health(&stats, busy_wait)).await
    }
}

/// Sets `path`'s permission bits to `mode` (Unix), where they allow more.
fn keep_private(path: &Path, mode: u32) -> Result<(), EngineError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| EngineError::io(format!("reading {}", path.display()), e))?;
        if meta.permissions().mode() & 0o777 & !mode != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| EngineError::io(format!("making {} private", path.display()), e))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Gives a pending table from schema 3 or older the columns of schema 4. Its records keep no
/// expiry (judged by their process, as they were); those gc had claimed (pid 0) stay claimed.
fn migrate_pending(conn: &Connection) -> Result<(), EngineError> {
    let has_owner: bool = conn.prepare("SELECT 1 FROM pragma_table_info('pending') WHERE name = 'owner'")?.exists([])?;
    if !has_owner {
        conn.execute_batch(
            "ALTER TABLE pending ADD COLUMN owner TEXT NOT NULL DEFAULT '';
             ALTER TABLE pending ADD COLUMN expires_ns INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE pending ADD COLUMN claimed INTEGER NOT NULL DEFAULT 0;
             UPDATE pending SET claimed = 1 WHERE pid = 0;",
        )?;
    }
    Ok(())
}

/// Takes in one recovered version inside `tx` (see [`Index::adopt_all`]).
fn adopt_in(tx: &rusqlite::Transaction<'_>, version: &Recovered, listed: &[String]) -> Result<Adopted, EngineError> {
    let Recovered { entry, blobs, tombstone } = version;
    let tombstone = *tombstone;
    let current: Option<(Vec<u8>, i64, Option<Vec<u8>>)> = tx
        .query_row("SELECT vid, time_ns, manifest FROM objects WHERE name = ?1", [&entry.name], |r| {
            Ok((r.get(0)?, r.get(1)?, Some(r.get(2)?)))
        })
        .optional()?
        .or(tx
            .query_row("SELECT vid, time_ns, NULL FROM tombstones WHERE name = ?1", [&entry.name], |r| {
                Ok((r.get(0)?, r.get(1)?, None))
            })
            .optional()?);
    let vid = &entry.stamp.vid.0[..];
    let outcome = match &current {
        Some((v, t, _)) if (*t as u64, vid_of(v.clone())) > (entry.stamp.time_ns, entry.stamp.vid) => {
            return Ok(Adopted::Older);
        }
        Some((v, _, manifest)) if v.as_slice() == vid => {
            let same = tombstone || manifest.as_deref() == Some(&entry.sealed_manifest[..]);
            if !tombstone {
                tx.execute(
                    "UPDATE objects SET manifest = ?2, placed = ?3 WHERE name = ?1",
                    params![entry.name, entry.sealed_manifest, placed_json(entry.placed.as_ref())],
                )?;
            }
            for p in listed {
                tx.execute("DELETE FROM blobs WHERE vid = ?1 AND provider = ?2", params![vid, p])?;
            }
            if same {
                Adopted::Same
            } else {
                Adopted::Updated
            }
        }
        other => {
            if let Some((old, _, _)) = other {
                tx.execute("DELETE FROM blobs WHERE vid = ?1", [old])?;
            }
            replace_version(tx, entry, tombstone)?;
            if other.is_some() {
                Adopted::Newer
            } else {
                Adopted::New
            }
        }
    };
    for b in blobs {
        tx.execute(
            "INSERT OR REPLACE INTO blobs (provider, blob, vid, size) VALUES (?1, ?2, ?3, ?4)",
            params![b.provider, b.blob, vid, b.size as i64],
        )?;
    }
    Ok(outcome)
}

/// Makes `entry` the one row of its name: an object, or a tombstone if `tombstone`.
fn replace_version(tx: &rusqlite::Transaction<'_>, entry: &IndexEntry, tombstone: bool) -> Result<(), EngineError> {
    tx.execute("DELETE FROM objects WHERE name = ?1", [&entry.name])?;
    tx.execute("DELETE FROM tombstones WHERE name = ?1", [&entry.name])?;
    let vid = &entry.stamp.vid.0[..];
    if tombstone {
        tx.execute(
            "INSERT INTO tombstones (name, vid, time_ns) VALUES (?1, ?2, ?3)",
            params![entry.name, vid, entry.stamp.time_ns as i64],
        )?;
    } else {
        tx.execute(
            "INSERT INTO objects (name, vid, time_ns, size, content_type, etag, manifest, placed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                entry.name,
                vid,
                entry.stamp.time_ns as i64,
                entry.size as i64,
                entry.content_type,
                entry.etag,
                entry.sealed_manifest,
                placed_json(entry.placed.as_ref())
            ],
        )?;
    }
    Ok(())
}

fn lost_pending(vid: &VersionId) -> EngineError {
    EngineError::State(format!(
        "write {} is no longer recorded as in progress (gc removed it as crashed); nothing was committed",
        vid.to_hex()
    ))
}

/// A placement as stored (`NULL` for none).
fn placed_json(placed: Option<&Placed>) -> Option<String> {
    placed.map(|p| serde_json::to_string(p).expect("serializable"))
}

/// Gives an objects table from schema 4 or older the `placed` column of schema 5. Its rows keep
/// none: jobs open their manifests as before.
fn migrate_placed(conn: &Connection) -> Result<(), EngineError> {
    let has: bool = conn.prepare("SELECT 1 FROM pragma_table_info('objects') WHERE name = 'placed'")?.exists([])?;
    if !has {
        conn.execute_batch("ALTER TABLE objects ADD COLUMN placed TEXT;")?;
    }
    Ok(())
}

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<IndexEntry> {
    Ok(IndexEntry {
        name: r.get(0)?,
        stamp: VersionStamp { vid: vid_of(r.get(1)?), time_ns: r.get::<_, i64>(2)? as u64 },
        size: r.get::<_, i64>(3)? as u64,
        content_type: r.get(4)?,
        etag: r.get(5)?,
        sealed_manifest: r.get(6)?,
        // One that does not parse is as good as none: the manifest says.
        placed: r.get::<_, Option<String>>(7)?.and_then(|json| serde_json::from_str(&json).ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::commit;
    use crate::index::LEGACY_PENDING_MAX_AGE_NS;

    /// Repair and evacuation record a blob only if its version is still current, once per
    /// blob: a scan of the object table each time made a repair of 10^5 objects quadratic.
    #[test]
    fn a_version_is_found_by_its_id_through_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let conn = db.conn();
        for (sql, by) in [
            ("SELECT COUNT(*) FROM objects WHERE vid = x'00' AND manifest = x'00'", "objects_by_vid"),
            ("SELECT COUNT(*) FROM tombstones WHERE vid = x'00'", "tombstones_by_vid"),
        ] {
            let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = st.query_map([], |r| r.get(3)).unwrap().collect::<Result<_, _>>().unwrap();
            assert!(plan.iter().any(|step| step.contains(by)), "{sql}: {plan:?}");
        }
    }

    /// A gateway serves reads while a commit (of this process or another) holds the write lock.
    // Holding the writer across the read is the point: the read runs on the blocking pool.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn reads_go_on_while_another_connection_holds_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let index = SqliteIndex::open(dir.path()).unwrap();
        let mut other = Connection::open(dir.path().join("index.sqlite")).unwrap();
        let held = other.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
        held.execute("INSERT INTO draining (provider, target) VALUES ('a', 'b')", []).unwrap();
        let started = std::time::Instant::now();
        assert!(index.get("x").await.unwrap().is_none());
        assert!(index.draining().await.unwrap().is_empty(), "the uncommitted row is not seen");
        assert!(started.elapsed() < BUSY_WAIT / 2, "the read waited for the writer");
        held.commit().unwrap();
        assert_eq!(index.draining().await.unwrap().len(), 1);
        // And while this index's own writer is busy (a commit waiting on its fsync holds it):
        // reads take the reader, not the writer's lock.
        let _writing = index.db.conn();
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), index.get("x")).await;
        assert!(read.is_ok(), "a read waited for this index's writer");
    }

    /// A version of `name` newer than every one made before.
    fn entry(name: &str, etag: &str) -> IndexEntry {
        static CLOCK: AtomicU64 = AtomicU64::new(1);
        IndexEntry {
            name: name.into(),
            stamp: VersionStamp { time_ns: CLOCK.fetch_add(1, Ordering::Relaxed), vid: VersionId::generate() },
            size: 1,
            content_type: None,
            etag: etag.into(),
            sealed_manifest: vec![1],
            placed: None,
        }
    }

    /// What `index` says of `name`: its ETag, if it has a current version.
    async fn etag_of(index: &SqliteIndex, name: &str) -> Option<String> {
        index.get(name).await.unwrap().map(|e| e.etag)
    }

    /// Two indexes on one folder are two gateways: a name read through one (and remembered)
    /// is read again as soon as the other commits a new version of it, a deletion, or a first
    /// version of a name it had found absent.
    #[tokio::test]
    async fn a_remembered_name_is_never_read_stale_after_another_process_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, reader) = (SqliteIndex::open(dir.path()).unwrap(), SqliteIndex::open(dir.path()).unwrap());
        assert_eq!(etag_of(&reader, "new").await, None);
        commit(&writer, &entry("x", "v1"), vec![], false).await.unwrap();
        for round in 2..50 {
            assert_eq!(etag_of(&reader, "x").await, Some(format!("v{}", round - 1)));
            assert_eq!(etag_of(&reader, "x").await, Some(format!("v{}", round - 1)), "remembered");
            commit(&writer, &entry("x", &format!("v{round}")), vec![], false).await.unwrap();
        }
        assert_eq!(etag_of(&reader, "x").await.as_deref(), Some("v49"));
        commit(&writer, &entry("x", "gone"), vec![], true).await.unwrap();
        assert_eq!(etag_of(&reader, "x").await, None);
        commit(&writer, &entry("new", "n1"), vec![], false).await.unwrap();
        assert_eq!(etag_of(&reader, "new").await.as_deref(), Some("n1"));
        assert!(reader.db.memo.lock().unwrap().names.contains_key("new"), "reads are remembered at all");
    }

    /// What is remembered is bounded in bytes: large objects' manifests (a check per segment)
    /// do not make a gateway's memory grow with the names it is asked about.
    #[tokio::test]
    async fn what_is_remembered_is_bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let index = SqliteIndex::open(dir.path()).unwrap();
        let names = MEMO_BYTES / (1 << 20) + 8;
        for i in 0..names {
            let mut e = entry(&format!("big{i}"), "e");
            e.sealed_manifest = vec![7; 1 << 20];
            commit(&index, &e, vec![], false).await.unwrap();
        }
        for i in 0..names {
            assert_eq!(index.get(&format!("big{i}")).await.unwrap().unwrap().sealed_manifest.len(), 1 << 20);
        }
        let memo = index.db.memo.lock().unwrap();
        assert!(memo.bytes <= MEMO_BYTES && memo.names.len() < names, "{} bytes, {} names", memo.bytes, memo.names.len());
        assert!(memo.names.len() > names / 2, "remembers up to its bound: {}", memo.names.len());
    }

    /// A process that numbered its commit and died before saying it ended (or a writer of
    /// its own that changed the index between the two) leaves the generation unsettled:
    /// readers then read the database every time, and the next commit settles it.
    #[tokio::test]
    async fn a_commit_that_never_ended_makes_readers_read_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, reader) = (SqliteIndex::open(dir.path()).unwrap(), SqliteIndex::open(dir.path()).unwrap());
        commit(&writer, &entry("x", "v1"), vec![], false).await.unwrap();
        assert_eq!(etag_of(&reader, "x").await.as_deref(), Some("v1"));
        // The dying process: its commit numbered, made visible, never ended.
        let dying = Connection::open(dir.path().join("index.sqlite")).unwrap();
        let numbering = Generation::open(dir.path()).unwrap();
        dying.commit_hook(Some(move || {
            numbering.begin();
            false
        }));
        dying.execute("UPDATE objects SET etag = 'v2' WHERE name = 'x'", []).unwrap();
        drop(dying);
        for _ in 0..3 {
            assert_eq!(etag_of(&reader, "x").await.as_deref(), Some("v2"));
        }
        assert!(reader.db.generation.settled().is_none());
        commit(&writer, &entry("y", "y1"), vec![], false).await.unwrap();
        assert!(reader.db.generation.settled().is_some(), "the next commit settles it");
        assert_eq!(etag_of(&reader, "x").await.as_deref(), Some("v2"));
        assert_eq!(etag_of(&reader, "x").await.as_deref(), Some("v2"));
    }

    #[tokio::test]
    async fn a_pending_record_from_schema_3_is_migrated_and_judged_by_its_process() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("index.sqlite")).unwrap();
            conn.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 INSERT INTO meta (key, value) VALUES ('schema', 3);
                 CREATE TABLE pending (
                     vid BLOB PRIMARY KEY, pid INTEGER NOT NULL, started_ns INTEGER NOT NULL, blobs TEXT NOT NULL);",
            )
            .unwrap();
            let blobs = r#"[["p","s/0123456789abcdef0123456789abcdef"]]"#;
            conn.execute("INSERT INTO pending VALUES (?1, ?2, ?3, ?4)", params![&[1u8; 16][..], std::process::id(), 5, blobs])
                .unwrap();
            conn.execute("INSERT INTO pending VALUES (?1, 0, 5, '[]')", params![&[2u8; 16][..]]).unwrap();
        }
        let index = SqliteIndex::open(dir.path()).unwrap();
        let mut rows = index.pending().await.unwrap();
        rows.sort_by_key(|p| p.vid.0);
        assert_eq!((rows[0].expires_ns, rows[0].claimed, rows[0].blobs.len()), (0, false, 1));
        assert!(rows[0].is_live(10), "its process runs");
        assert!(!rows[0].is_live(5 + LEGACY_PENDING_MAX_AGE_NS), "past a day the pid was reused");
        assert!(rows[1].claimed && !rows[1].is_live(10), "claimed by an older gc (pid 0)");
        drop(index);
        // Opening it again changes nothing more.
        assert_eq!(SqliteIndex::open(dir.path()).unwrap().pending().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn the_state_folder_and_index_are_the_owners_alone_even_when_they_were_not() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".outlast");
        let index = SqliteIndex::open(&state).unwrap();
        index.save_health(&[("a".into(), HealthStats::default())], BUSY_WAIT).await.unwrap();
        assert_eq!(mode(&state), 0o700);
        for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "index.gen"] {
            assert_eq!(mode(&state.join(f)), 0o600, "{f}");
        }
        drop(index);
        // A store made by an older build: world-readable, tightened when opened.
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(state.join("index.sqlite"), std::fs::Permissions::from_mode(0o644)).unwrap();
        SqliteIndex::open(&state).unwrap();
        assert_eq!((mode(&state), mode(&state.join("index.sqlite"))), (0o700, 0o600));
    }
}
