//! The local index: an SQLite cache of each name's current version and of every blob the store
//! references, so `ls` and `stat` need no provider round-trip and gc knows what is garbage.
//!
//! It is a cache: the sealed manifests on the providers are the durable record. It stores the
//! sealed manifest bytes, not their plaintext, so the data keys stay sealed at rest.

pub(crate) mod listed;

use std::path::Path;
use std::sync::Mutex;

use outlast_codec::{VersionId, VersionStamp};
use outlast_provider::HealthStats;
use rusqlite::{params, Connection, OptionalExtension};

use crate::EngineError;

/// 1: objects, tombstones, blobs, pending. 2 adds `health` and `draining`; 3 adds `garbage`
/// and `markers` (each created by `CREATE ... IF NOT EXISTS`, so an older index is migrated
/// by opening it); 4 gives each pending write an owner, an expiry and a claimed flag (added
/// to an older table by [`migrate_pending`]).
const SCHEMA_VERSION: i64 = 4;

/// How long a pending write recorded by schema 3 or older (no expiry, judged by its process
/// alone) is taken as live while a process with its pid runs: past this, the pid was reused.
const LEGACY_PENDING_MAX_AGE_NS: u64 = 24 * 3600 * 1_000_000_000;

/// One row of the object table.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// Object name.
    pub name: String,
    /// Current version.
    pub stamp: VersionStamp,
    /// Plaintext size.
    pub size: u64,
    /// Content type.
    pub content_type: Option<String>,
    /// Hex BLAKE3 of the plaintext.
    pub etag: String,
    /// The sealed manifest, as stored on the providers.
    pub sealed_manifest: Vec<u8>,
}

/// A blob the store references (or, while pending, is writing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// Provider name.
    pub provider: String,
    /// Blob name.
    pub blob: String,
    /// Blob size in bytes.
    pub size: u64,
}

/// The index record of a write intent (`intent.rs`): a write in progress, or one that crashed,
/// whose blobs are garbage unless it commits.
#[derive(Debug, Clone)]
pub struct PendingWrite {
    /// Version being written.
    pub vid: VersionId,
    /// Random id of the intent's holder, which alone may renew it (empty for records from
    /// schema 3 or older).
    pub owner: String,
    /// Holding process on this machine, 0 if none: when it is gone the intent is dead before
    /// its expiry.
    pub pid: u32,
    /// When it started.
    pub started_ns: u64,
    /// Past this (local clock), the intent is dead unless renewed; 0 for records from schema
    /// 3 or older, judged by their process alone.
    pub expires_ns: u64,
    /// gc took it for dead: it can never commit, and its record goes once its blobs are gone.
    pub claimed: bool,
    /// Blobs it may have written.
    pub blobs: Vec<BlobRef>,
}

impl PendingWrite {
    /// Whether its holder may still commit it, at `now_ns`.
    pub fn is_live(&self, now_ns: u64) -> bool {
        if self.claimed {
            return false;
        }
        let holder_alive = self.pid == 0 || process_alive(self.pid);
        if self.expires_ns == 0 {
            return self.pid != 0 && holder_alive && now_ns.saturating_sub(self.started_ns) < LEGACY_PENDING_MAX_AGE_NS;
        }
        holder_alive && now_ns < self.expires_ns
    }
}

/// Whether process `pid` runs on this machine (true where that cannot be told).
fn process_alive(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    if proc.is_dir() {
        proc.join(pid.to_string()).exists()
    } else {
        true
    }
}

/// A version recovered from the providers, as [`Index::adopt_all`] takes it in.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// The version (a tombstone's entry if `tombstone`).
    pub entry: IndexEntry,
    /// Its blobs found by listing.
    pub blobs: Vec<BlobRef>,
    /// Whether it is a deletion.
    pub tombstone: bool,
}

/// A manifest copy a recovery read and opened, staged in a temporary table of the index's
/// connection until every copy is in (a recovery of a large store must not hold them all in
/// memory).
pub struct StagedCopy {
    /// The copy's blob name (the version's manifest name).
    pub blob: String,
    /// The provider it was read from.
    pub provider: String,
    /// The object name it is a version of.
    pub name: String,
    /// The version.
    pub stamp: VersionStamp,
    /// Its placement revision.
    pub revision: u32,
    /// Its sealed bytes.
    pub sealed: Vec<u8>,
}

/// What staging a copy found beside the copies of its version staged before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staged {
    /// The first copy, or one of the same revision as the best so far (another holder).
    Held,
    /// An older revision than one staged already: stale.
    Stale,
    /// A newer revision: the copies staged before it (this many holders) are stale.
    Replaced(u64),
}

/// The newest staged version of one name: its best copy's sealed bytes and every provider
/// that holds that revision.
pub struct StagedVersion {
    /// The object name.
    pub name: String,
    /// The version's manifest blob name.
    pub blob: String,
    /// Sealed manifest of the best revision.
    pub sealed: Vec<u8>,
    /// Providers holding it.
    pub holders: Vec<String>,
}

/// What the index records on one provider, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobCount {
    /// Blobs of any kind.
    pub blobs: u64,
    /// Shard blobs among them.
    pub shards: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// What [`Index::adopt_all`] did with a recovered version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// The name was not known: recorded.
    New,
    /// It replaced an older version of the name.
    Newer,
    /// The same version, now with a newer manifest revision.
    Updated,
    /// The same version as recorded (its blob rows refreshed from the listing).
    Same,
    /// The index knows a newer version of the name: nothing changed.
    Older,
}

/// Rows jobs take from the index at once.
pub const PAGE: usize = 1000;

/// How long a command waits for another one (from the same state folder) to finish writing
/// the index before it gives up with [`EngineError::IndexBusy`].
pub const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A walk over a table in key order, [`PAGE`] rows at a time (see [`Index::object_pages`],
/// [`Index::blob_pages`], [`Index::tombstone_pages`]): each page starts after the last key of
/// the one before, so a row committed behind the cursor during the walk is not seen, as if the
/// walk had begun before it, and what is held is a page, whatever the table.
pub struct Pages<'a, T> {
    fetch: Box<FetchAfter<'a, T>>,
    key: fn(&T) -> String,
    after: Option<String>,
    done: bool,
}

/// Reads the page of rows after a key (the first page after none).
type FetchAfter<'a, T> = dyn FnMut(Option<&str>) -> Result<Vec<T>, EngineError> + Send + 'a;

/// The current object versions, a page at a time.
pub type ObjectPages<'a> = Pages<'a, IndexEntry>;

impl<'a, T> Pages<'a, T> {
    fn new(fetch: impl FnMut(Option<&str>) -> Result<Vec<T>, EngineError> + Send + 'a, key: fn(&T) -> String) -> Self {
        Pages { fetch: Box::new(fetch), key, after: None, done: false }
    }

    /// The next page, or `None` past the last row.
    pub fn next_page(&mut self) -> Result<Option<Vec<T>>, EngineError> {
        if self.done {
            return Ok(None);
        }
        let page = (self.fetch)(self.after.as_deref())?;
        self.done = page.len() < PAGE;
        self.after = page.last().map(self.key);
        Ok((!page.is_empty()).then_some(page))
    }
}

impl<'a> Pages<'a, IndexEntry> {
    /// What `pick` makes of each row, as a stream that reads the next page only once the
    /// items of the last are taken: a job over the whole store holds a page, not the store.
    pub fn picked<T: 'a>(
        self,
        pick: impl FnMut(IndexEntry) -> Result<Option<T>, EngineError> + 'a,
    ) -> impl futures::Stream<Item = Result<T, EngineError>> + 'a {
        futures::stream::try_unfold(
            (self, std::collections::VecDeque::new(), pick),
            |(mut pages, mut queue, mut pick)| async move {
                loop {
                    if let Some(item) = queue.pop_front() {
                        return Ok(Some((item, (pages, queue, pick))));
                    }
                    let Some(page) = pages.next_page()? else { return Ok(None) };
                    for entry in page {
                        queue.extend(pick(entry)?);
                    }
                }
            },
        )
    }
}

/// The index database.
pub struct Index {
    conn: Mutex<Connection>,
}

fn vid_of(bytes: Vec<u8>) -> VersionId {
    VersionId(bytes.try_into().unwrap_or([0; 16]))
}

impl Index {
    /// Opens (creating if needed) the index in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Index, EngineError> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| EngineError::io(format!("creating state folder {}", state_dir.display()), e))?;
        let path = state_dir.join("index.sqlite");
        // Names, sizes and plaintext hashes are the user's: the folder and the database (and
        // the journal files SQLite creates with the database's mode) are for the owner alone.
        keep_private(state_dir, 0o700)?;
        let conn = Connection::open(&path)?;
        for file in [path.clone(), state_dir.join("index.sqlite-wal"), state_dir.join("index.sqlite-shm")] {
            if file.exists() {
                keep_private(&file, 0o600)?;
            }
        }
        conn.busy_timeout(BUSY_WAIT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Jobs stage listings and manifest copies in temporary tables: in a file, beyond the
        // page cache. (Set once here: setting it again would drop the temporary tables.)
        conn.pragma_update(None, "temp_store", "FILE")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS objects (
                 name TEXT PRIMARY KEY, vid BLOB NOT NULL, time_ns INTEGER NOT NULL, size INTEGER NOT NULL,
                 content_type TEXT, etag TEXT NOT NULL, manifest BLOB NOT NULL);
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
            Some(1..=3) => {
                migrate_pending(&conn)?;
                conn.execute("UPDATE meta SET value = ?1 WHERE key = 'schema'", [SCHEMA_VERSION])?;
            }
            Some(other) => {
                return Err(EngineError::State(format!(
                    "index schema {other} is newer than this build understands ({SCHEMA_VERSION}); upgrade outlast"
                )))
            }
        }
        Ok(Index { conn: Mutex::new(conn) })
    }

    /// Runs `f` with waits on a busy index cut to `wait` (the default is [`BUSY_WAIT`]).
    pub fn within<T>(&self, wait: std::time::Duration, f: impl FnOnce() -> T) -> T {
        let set = |d| {
            let _ = self.conn().busy_timeout(d);
        };
        set(wait);
        let out = f();
        set(BUSY_WAIT);
        out
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("index lock poisoned")
    }

    /// Records that a write of `vid` started, before any blob is written.
    pub fn begin_pending(&self, p: &PendingWrite) -> Result<(), EngineError> {
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
    pub fn renew_pending(&self, vid: &VersionId, owner: &str, expires_ns: u64) -> Result<bool, EngineError> {
        let changed = self.conn().execute(
            "UPDATE pending SET expires_ns = ?3 WHERE vid = ?1 AND owner = ?2 AND claimed = 0",
            params![&vid.0[..], owner, expires_ns as i64],
        )?;
        Ok(changed == 1)
    }

    /// Adds blobs to a pending write before they are written (the next part of a stream).
    pub fn add_pending_blobs(&self, vid: &VersionId, more: &[BlobRef]) -> Result<(), EngineError> {
        let mut blobs = self.pending_blobs(vid)?;
        blobs.extend(more.iter().cloned());
        let json =
            serde_json::to_string(&blobs.iter().map(|b| (&b.provider, &b.blob)).collect::<Vec<_>>()).expect("serializable");
        let changed = self.conn().execute("UPDATE pending SET blobs = ?2 WHERE vid = ?1", params![&vid.0[..], json])?;
        if changed != 1 {
            return Err(lost_pending(vid));
        }
        Ok(())
    }

    /// The blobs a pending write may have written.
    pub fn pending_blobs(&self, vid: &VersionId) -> Result<Vec<BlobRef>, EngineError> {
        Ok(self.pending()?.into_iter().find(|p| p.vid == *vid).map(|p| p.blobs).unwrap_or_default())
    }

    /// Forgets a pending write (after it committed, or after its blobs were removed).
    pub fn end_pending(&self, vid: &VersionId) -> Result<(), EngineError> {
        self.conn().execute("DELETE FROM pending WHERE vid = ?1", [&vid.0[..]])?;
        Ok(())
    }

    /// Lets go of a write that gave up with blobs it could not remove: no holder and expired, so
    /// the next gc claims it at once rather than after its expiry.
    pub fn release_pending(&self, vid: &VersionId) -> Result<(), EngineError> {
        self.conn().execute("UPDATE pending SET pid = 0, expires_ns = 1 WHERE vid = ?1 AND claimed = 0", [&vid.0[..]])?;
        Ok(())
    }

    /// Takes over the record `seen` of a write that is no longer live, so that its blobs can be
    /// removed: true if this caller claimed it (the write can then never commit). A holder
    /// that renewed it since `seen` was read keeps it. The record stays, marked, until its
    /// blobs are gone ([`Self::end_pending`]): a gc that cannot delete them all tries again
    /// next time.
    pub fn claim_pending(&self, seen: &PendingWrite) -> Result<bool, EngineError> {
        let claimed = self.conn().execute(
            "UPDATE pending SET claimed = 1 WHERE vid = ?1 AND claimed = 0 AND expires_ns = ?2",
            params![&seen.vid.0[..], seen.expires_ns as i64],
        )?;
        Ok(claimed == 1 || seen.claimed)
    }

    /// All pending writes.
    pub fn pending(&self) -> Result<Vec<PendingWrite>, EngineError> {
        let conn = self.conn();
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
    pub fn commit(&self, entry: &IndexEntry, blobs: &[BlobRef], tombstone: bool) -> Result<Vec<BlobRef>, EngineError> {
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
            return Err(EngineError::Superseded(entry.name.clone()));
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
    pub fn adopt_all(&self, versions: &[Recovered], listed: &[String]) -> Result<Vec<Adopted>, EngineError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let outcomes = versions.iter().map(|v| adopt_in(&tx, v, listed)).collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        Ok(outcomes)
    }

    /// Opens the staging area of a recovery: a temporary table of this process's connection
    /// (another recovery from the same folder has its own), kept in a temporary file beyond
    /// SQLite's page cache, and gone when the process is.
    pub fn stage_begin(&self) -> Result<(), EngineError> {
        self.conn().execute_batch(
            "DROP TABLE IF EXISTS temp.recover_stage;
             CREATE TEMP TABLE recover_stage (
                 blob TEXT PRIMARY KEY, name TEXT NOT NULL, time_ns INTEGER NOT NULL, vid BLOB NOT NULL,
                 revision INTEGER NOT NULL, sealed BLOB NOT NULL, holders TEXT NOT NULL);
             CREATE INDEX temp.recover_stage_by_name ON recover_stage (name, time_ns, vid);",
        )?;
        Ok(())
    }

    /// Stages copies in one transaction; for each, what it was beside its version's copies
    /// staged before it (the highest revision is kept, with all of its holders).
    pub fn stage_copies(&self, copies: &[StagedCopy]) -> Result<Vec<Staged>, EngineError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut out = Vec::with_capacity(copies.len());
        for c in copies {
            let before: Option<(u32, String)> = tx
                .query_row("SELECT revision, holders FROM recover_stage WHERE blob = ?1", [&c.blob], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let staged = match before {
                Some((revision, _)) if revision > c.revision => Staged::Stale,
                Some((revision, holders)) if revision == c.revision => {
                    let mut holders: Vec<String> = serde_json::from_str(&holders).unwrap_or_default();
                    holders.push(c.provider.clone());
                    let holders = serde_json::to_string(&holders).expect("serializable");
                    tx.execute("UPDATE recover_stage SET holders = ?2 WHERE blob = ?1", params![c.blob, holders])?;
                    Staged::Held
                }
                before => {
                    let displaced = match &before {
                        Some((_, holders)) => serde_json::from_str::<Vec<String>>(holders).map_or(0, |h| h.len() as u64),
                        None => 0,
                    };
                    tx.execute(
                        "INSERT OR REPLACE INTO recover_stage (blob, name, time_ns, vid, revision, sealed, holders)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            c.blob,
                            c.name,
                            c.stamp.time_ns as i64,
                            &c.stamp.vid.0[..],
                            c.revision,
                            c.sealed,
                            serde_json::to_string(&[&c.provider]).expect("serializable")
                        ],
                    )?;
                    if before.is_some() {
                        Staged::Replaced(displaced)
                    } else {
                        Staged::Held
                    }
                }
            };
            out.push(staged);
        }
        tx.commit()?;
        Ok(out)
    }

    /// The newest staged version of each name (greatest stamp), in name order, `limit`
    /// names after `after`.
    pub fn staged_newest(&self, after: Option<&str>, limit: usize) -> Result<Vec<StagedVersion>, EngineError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT name, blob, sealed, holders FROM recover_stage s
             WHERE name > ?1 AND NOT EXISTS (
                 SELECT 1 FROM recover_stage t WHERE t.name = s.name
                 AND (t.time_ns > s.time_ns OR (t.time_ns = s.time_ns AND t.vid > s.vid)))
             ORDER BY name LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after.unwrap_or(""), limit as i64], |r| {
            let holders: String = r.get(3)?;
            Ok(StagedVersion {
                name: r.get(0)?,
                blob: r.get(1)?,
                sealed: r.get(2)?,
                holders: serde_json::from_str(&holders).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Drops the staging area once a recovery is done with it.
    pub fn stage_end(&self) -> Result<(), EngineError> {
        self.conn().execute_batch("DROP TABLE IF EXISTS temp.recover_stage;")?;
        Ok(())
    }

    /// The current version of `name`, if any.
    pub fn get(&self, name: &str) -> Result<Option<IndexEntry>, EngineError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT name, vid, time_ns, size, content_type, etag, manifest FROM objects WHERE name = ?1",
                [name],
                row_to_entry,
            )
            .optional()?;
        Ok(row)
    }

    /// Latest stamp known for `name`, live or deleted (new versions must be newer).
    pub fn latest_stamp(&self, name: &str) -> Result<Option<u64>, EngineError> {
        let conn = self.conn();
        let t: Option<i64> = conn
            .query_row(
                "SELECT MAX(t) FROM (SELECT time_ns AS t FROM objects WHERE name = ?1 UNION ALL SELECT time_ns FROM tombstones WHERE name = ?1)",
                [name],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        Ok(t.map(|t| t as u64))
    }

    /// Objects whose names start with `prefix`, in name order.
    pub fn list(&self, prefix: &str) -> Result<Vec<IndexEntry>, EngineError> {
        let mut all = Vec::new();
        let mut pages = self.object_pages(prefix);
        while let Some(page) = pages.next_page()? {
            all.extend(page);
        }
        Ok(all)
    }

    /// Every blob referenced on `provider`.
    pub fn blobs_on(&self, provider: &str) -> Result<Vec<BlobRef>, EngineError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT provider, blob, size FROM blobs WHERE provider = ?1")?;
        let rows =
            st.query_map([provider], |r| Ok(BlobRef { provider: r.get(0)?, blob: r.get(1)?, size: r.get::<_, i64>(2)? as u64 }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` blobs recorded on `provider`, in name order after `after`: how jobs walk
    /// a provider's blobs without holding them all.
    fn blobs_on_page(&self, provider: &str, after: Option<&str>, limit: usize) -> Result<Vec<BlobRef>, EngineError> {
        let conn = self.conn();
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
    pub fn count_blobs_on(&self, provider: &str) -> Result<BlobCount, EngineError> {
        let (blobs, shards, bytes): (i64, i64, i64) = self.conn().query_row(
            "SELECT COUNT(*), COALESCE(SUM(blob LIKE 's/%'), 0), COALESCE(SUM(size), 0) FROM blobs WHERE provider = ?1",
            [provider],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(BlobCount { blobs: blobs as u64, shards: shards as u64, bytes: bytes as u64 })
    }

    /// At most `count` of the blobs recorded on `provider`, spread evenly over them in name
    /// order (a probe of a few, whatever the provider holds).
    pub fn sample_blobs_on(&self, provider: &str, count: usize) -> Result<Vec<BlobRef>, EngineError> {
        let total = self.count_blobs_on(provider)?.blobs as usize;
        let conn = self.conn();
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
impl Index {
    /// Every blob recorded for version `vid`.
    pub fn blobs_of(&self, vid: &VersionId) -> Result<Vec<BlobRef>, EngineError> {
        let conn = self.conn();
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
    pub fn add_blob(&self, vid: &VersionId, placed_by: &[u8], b: &BlobRef) -> Result<bool, EngineError> {
        self.add_blob_if("SELECT COUNT(*) FROM objects WHERE vid = ?1 AND manifest = ?2", params![&vid.0[..], placed_by], vid, b)
    }

    /// Records a copy of tombstone `vid` if it is still the current version of its name;
    /// returns whether it was recorded.
    pub fn add_tombstone_copy(&self, vid: &VersionId, b: &BlobRef) -> Result<bool, EngineError> {
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
    pub fn is_current(&self, vid: &VersionId) -> Result<bool, EngineError> {
        let n: i64 = self.conn().query_row(
            "SELECT (SELECT COUNT(*) FROM objects WHERE vid = ?1) + (SELECT COUNT(*) FROM tombstones WHERE vid = ?1)",
            [&vid.0[..]],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Forgets a blob found missing or damaged, so it counts as repair debt; returns whether
    /// it was recorded (a move or replacement may have dropped it meanwhile: then it was no
    /// loss).
    pub fn forget_blob(&self, provider: &str, blob: &str) -> Result<bool, EngineError> {
        Ok(self.conn().execute("DELETE FROM blobs WHERE provider = ?1 AND blob = ?2", [provider, blob])? > 0)
    }

    /// Forgets each of `blobs` that is still recorded as it is given (same size), in one
    /// transaction; returns how many were.
    pub fn forget_blobs(&self, blobs: &[BlobRef]) -> Result<u64, EngineError> {
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
    pub fn objects_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<IndexEntry>, EngineError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT name, vid, time_ns, size, content_type, etag, manifest FROM objects
             WHERE name >= ?1 AND (?2 IS NULL OR name > ?2) AND substr(name, 1, length(?1)) = ?1
             ORDER BY name LIMIT ?3",
        )?;
        let rows = st.query_map(params![prefix, after, limit as i64], row_to_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` tombstones in name order after `after`.
    pub fn tombstones_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, VersionStamp)>, EngineError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT name, vid, time_ns FROM tombstones WHERE (?1 IS NULL OR name > ?1) ORDER BY name LIMIT ?2")?;
        let rows = st.query_map(params![after, limit as i64], |r| {
            Ok((r.get::<_, String>(0)?, VersionStamp { vid: vid_of(r.get(1)?), time_ns: r.get::<_, i64>(2)? as u64 }))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Walks the current object versions a page at a time, in name order.
    pub fn object_pages(&self, prefix: &str) -> ObjectPages<'_> {
        let prefix = prefix.to_string();
        Pages::new(move |after| self.objects_page(&prefix, after, PAGE), |e: &IndexEntry| e.name.clone())
    }

    /// Walks the blobs recorded on `provider` a page at a time, in name order.
    pub fn blob_pages(&self, provider: &str) -> Pages<'_, BlobRef> {
        let provider = provider.to_string();
        Pages::new(move |after| self.blobs_on_page(&provider, after, PAGE), |b: &BlobRef| b.blob.clone())
    }

    /// Walks the tombstones a page at a time, in name order.
    pub fn tombstone_pages(&self) -> Pages<'_, (String, VersionStamp)> {
        Pages::new(move |after| self.tombstones_page(after, PAGE), |(name, _): &(String, VersionStamp)| name.clone())
    }

    /// The plaintext bytes of every current object (a job's progress total).
    pub fn total_size(&self) -> Result<u64, EngineError> {
        let total: i64 = self.conn().query_row("SELECT COALESCE(SUM(size), 0) FROM objects", [], |r| r.get(0))?;
        Ok(total as u64)
    }

    /// Whether the index records any version at all, current or deleted.
    pub fn has_versions(&self) -> Result<bool, EngineError> {
        let conn = self.conn();
        let any =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM objects) OR EXISTS (SELECT 1 FROM tombstones)", [], |r| r.get(0))?;
        Ok(any)
    }

    /// Providers being evacuated, with their targets: new writes are not placed on them.
    pub fn draining(&self) -> Result<Vec<(String, String)>, EngineError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT provider, target FROM draining ORDER BY provider")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks `provider` as being evacuated to `target`.
    pub fn set_draining(&self, provider: &str, target: &str) -> Result<(), EngineError> {
        self.conn().execute("INSERT OR REPLACE INTO draining (provider, target) VALUES (?1, ?2)", [provider, target])?;
        Ok(())
    }

    /// Forgets that `provider` is being evacuated (it was removed from the configuration).
    pub fn clear_draining(&self, provider: &str) -> Result<(), EngineError> {
        self.conn().execute("DELETE FROM draining WHERE provider = ?1", [provider])?;
        Ok(())
    }

    /// Switches version `vid` of `name` from the sealed manifest `was` to `now`, in which
    /// `from`'s shards moved: `from`'s blobs of the version are forgotten, and so is every copy
    /// of `manifest_blob` (holders that missed the rewrite keep the old revision: repair
    /// rewrites them); `added` (moved shards, new manifest copies) is recorded, all in one
    /// transaction. Returns false (changing nothing) when the current manifest is no longer
    /// `was` (replaced, removed, or rewritten by another move).
    #[allow(clippy::too_many_arguments)]
    pub fn move_shards(
        &self,
        name: &str,
        vid: &VersionId,
        was: &[u8],
        now: &[u8],
        from: &str,
        manifest_blob: &str,
        added: &[BlobRef],
    ) -> Result<bool, EngineError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let v = &vid.0[..];
        let changed = tx.execute(
            "UPDATE objects SET manifest = ?4 WHERE name = ?1 AND vid = ?2 AND manifest = ?3",
            params![name, v, was, now],
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
    pub fn note_garbage(&self, blobs: &[BlobRef], since_ns: u64) -> Result<(), EngineError> {
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
    pub fn garbage(&self) -> Result<std::collections::HashSet<(String, String)>, EngineError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT provider, blob FROM garbage")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets a garbage record once its blob is gone.
    pub fn forget_garbage(&self, provider: &str, blob: &str) -> Result<(), EngineError> {
        self.conn().execute("DELETE FROM garbage WHERE provider = ?1 AND blob = ?2", [provider, blob])?;
        Ok(())
    }

    /// Whether blob name `blob` is referenced on any provider by a committed version, or
    /// named by a write in progress, now. Names do not depend on the provider, so a name
    /// recorded anywhere is live everywhere (two providers may be one location).
    pub fn is_name_recorded(&self, blob: &str) -> Result<bool, EngineError> {
        let referenced: i64 = self.conn().query_row("SELECT COUNT(*) FROM blobs WHERE blob = ?1", [blob], |r| r.get(0))?;
        if referenced > 0 {
            return Ok(true);
        }
        Ok(self.pending()?.iter().any(|p| p.blobs.iter().any(|b| b.blob == blob)))
    }

    /// Records that `provider`'s location holds this store's identity marker: from now on a
    /// location without one is not taken for it. Already recorded: nothing is written (every
    /// command checks every provider it uses, and a write here costs an fsync).
    pub fn record_marker(&self, provider: &str, written_ns: u64) -> Result<(), EngineError> {
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
    pub fn knows_provider(&self, provider: &str) -> Result<bool, EngineError> {
        let n: i64 = self.conn().query_row(
            "SELECT (SELECT COUNT(*) FROM markers WHERE provider = ?1) + (SELECT COUNT(*) FROM blobs WHERE provider = ?1)",
            [provider],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Health observations saved by earlier runs, by provider name.
    pub fn load_health(&self) -> Result<Vec<(String, HealthStats)>, EngineError> {
        let conn = self.conn();
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
    pub fn save_health(&self, stats: &[(&str, HealthStats)]) -> Result<(), EngineError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let names: Vec<String> = {
            let mut st = tx.prepare("SELECT provider FROM health")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for gone in names.iter().filter(|n| !stats.iter().any(|(s, _)| s == n)) {
            tx.execute("DELETE FROM health WHERE provider = ?1", [gone])?;
        }
        for (name, h) in stats {
            let json = serde_json::to_string(h).expect("serializable");
            tx.execute("INSERT OR REPLACE INTO health (provider, stats) VALUES (?1, ?2)", [name, &json.as_str()])?;
        }
        tx.commit()?;
        Ok(())
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
                tx.execute("UPDATE objects SET manifest = ?2 WHERE name = ?1", params![entry.name, entry.sealed_manifest])?;
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
            "INSERT INTO objects (name, vid, time_ns, size, content_type, etag, manifest) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                entry.name,
                vid,
                entry.stamp.time_ns as i64,
                entry.size as i64,
                entry.content_type,
                entry.etag,
                entry.sealed_manifest
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

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<IndexEntry> {
    Ok(IndexEntry {
        name: r.get(0)?,
        stamp: VersionStamp { vid: vid_of(r.get(1)?), time_ns: r.get::<_, i64>(2)? as u64 },
        size: r.get::<_, i64>(3)? as u64,
        content_type: r.get(4)?,
        etag: r.get(5)?,
        sealed_manifest: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, time_ns: u64) -> IndexEntry {
        IndexEntry {
            name: name.into(),
            stamp: VersionStamp { time_ns, vid: VersionId::generate() },
            size: 1,
            content_type: None,
            etag: "e".into(),
            sealed_manifest: vec![1],
        }
    }

    fn pending(vid: VersionId, blobs: Vec<BlobRef>) -> PendingWrite {
        PendingWrite {
            vid,
            owner: "me".into(),
            pid: std::process::id(),
            started_ns: 0,
            expires_ns: u64::MAX >> 1,
            claimed: false,
            blobs,
        }
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let blob = |b: &str| vec![BlobRef { provider: "p".into(), blob: b.into(), size: 1 }];
        let commit = |e: IndexEntry, blobs: Vec<BlobRef>, tomb: bool| {
            index.begin_pending(&pending(e.stamp.vid, blobs.clone())).unwrap();
            index.commit(&e, &blobs, tomb)
        };
        assert!(commit(entry("a", 10), blob("s/new"), false).unwrap().is_empty());
        assert!(matches!(commit(entry("a", 5), blob("s/old"), false), Err(EngineError::Superseded(_))));
        assert_eq!(index.get("a").unwrap().unwrap().stamp.time_ns, 10);
        assert_eq!(index.blobs_on("p").unwrap(), blob("s/new"));
        // A newer one replaces it and hands back the replaced blobs as garbage.
        assert_eq!(commit(entry("a", 11), blob("s/newer"), false).unwrap(), blob("s/new"));
        // A tombstone is a version too: nothing older comes back after it.
        commit(entry("a", 12), blob("m/tomb"), true).unwrap();
        assert!(index.get("a").unwrap().is_none());
        assert!(matches!(commit(entry("a", 11), vec![], false), Err(EngineError::Superseded(_))));
    }

    #[test]
    fn a_provider_s_blobs_are_counted_and_sampled_without_being_held() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let e = entry("a", 10);
        let mut blobs: Vec<BlobRef> =
            (0..100).map(|i| BlobRef { provider: "p".into(), blob: format!("s/{i:03}"), size: 2 }).collect();
        blobs.push(BlobRef { provider: "p".into(), blob: "m/x".into(), size: 5 });
        blobs.push(BlobRef { provider: "q".into(), blob: "s/q".into(), size: 7 });
        index.begin_pending(&pending(e.stamp.vid, blobs.clone())).unwrap();
        index.commit(&e, &blobs, false).unwrap();
        assert_eq!(index.count_blobs_on("p").unwrap(), BlobCount { blobs: 101, shards: 100, bytes: 205 });
        let names: Vec<String> = index.sample_blobs_on("p", 3).unwrap().into_iter().map(|b| b.blob).collect();
        assert_eq!(names, ["m/x", "s/049", "s/099"]);
        assert_eq!(index.sample_blobs_on("q", 3).unwrap().len(), 1);
        assert!(index.sample_blobs_on("none", 3).unwrap().is_empty());
    }

    /// Repair and evacuation record a blob only if its version is still current, once per
    /// blob: a scan of the object table each time made a repair of 10^5 objects quadratic.
    #[test]
    fn a_version_is_found_by_its_id_through_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let conn = index.conn();
        for (sql, by) in [
            ("SELECT COUNT(*) FROM objects WHERE vid = x'00' AND manifest = x'00'", "objects_by_vid"),
            ("SELECT COUNT(*) FROM tombstones WHERE vid = x'00'", "tombstones_by_vid"),
        ] {
            let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = st.query_map([], |r| r.get(3)).unwrap().collect::<Result<_, _>>().unwrap();
            assert!(plan.iter().any(|step| step.contains(by)), "{sql}: {plan:?}");
        }
    }

    #[test]
    fn a_write_whose_pending_record_gc_removed_cannot_commit() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let e = entry("a", 10);
        assert!(matches!(index.commit(&e, &[], false), Err(EngineError::State(_))));
        assert!(matches!(index.add_pending_blobs(&e.stamp.vid, &[]), Err(EngineError::State(_))));
        assert!(index.get("a").unwrap().is_none());
    }

    #[test]
    fn a_blob_is_recorded_only_for_the_manifest_it_was_written_for() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let e = entry("a", 10);
        index.begin_pending(&pending(e.stamp.vid, vec![])).unwrap();
        index.commit(&e, &[], false).unwrap();
        let b = |p: &str| BlobRef { provider: p.into(), blob: "s/x".into(), size: 1 };
        assert!(index.add_blob(&e.stamp.vid, &e.sealed_manifest, &b("p")).unwrap());
        // Another move rewrote the manifest: a blob written for the old one is not recorded.
        assert!(index.move_shards("a", &e.stamp.vid, &e.sealed_manifest, &[2], "p", "m/x", &[]).unwrap());
        assert!(!index.add_blob(&e.stamp.vid, &e.sealed_manifest, &b("q")).unwrap());
        assert!(index.add_blob(&e.stamp.vid, &[2], &b("q")).unwrap());
        assert_eq!(index.blobs_of(&e.stamp.vid).unwrap(), vec![b("q")]);
        // A tombstone copy is recorded only while the tombstone is current.
        assert!(!index.add_tombstone_copy(&e.stamp.vid, &b("r")).unwrap());
    }

    #[test]
    fn a_claimed_write_can_never_commit() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let e = entry("a", 10);
        index.begin_pending(&pending(e.stamp.vid, vec![])).unwrap();
        let seen = index.pending().unwrap().remove(0);
        assert!(index.claim_pending(&seen).unwrap());
        assert!(!index.claim_pending(&seen).unwrap(), "claimed twice");
        assert!(!index.renew_pending(&e.stamp.vid, "me", u64::MAX >> 1).unwrap(), "renewed after the claim");
        assert!(matches!(index.commit(&e, &[], false), Err(EngineError::State(_))));
        // Still listed (its blobs may not all be gone yet), as claimed; a later gc carries on.
        let claimed = index.pending().unwrap().remove(0);
        assert!(claimed.claimed && !claimed.is_live(1));
        assert!(index.claim_pending(&claimed).unwrap());
    }

    #[test]
    fn an_intent_lives_until_its_expiry_or_its_process_and_a_renewal_keeps_it_from_a_claim() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let vid = VersionId::generate();
        let mut p = pending(vid, vec![]);
        p.expires_ns = 100;
        index.begin_pending(&p).unwrap();
        assert!(p.is_live(99) && !p.is_live(100), "judged by its expiry while its process runs");
        let dead_process = PendingWrite { pid: u32::MAX - 1, ..p.clone() };
        assert!(!dead_process.is_live(0), "a holder that is gone ends it before its expiry");
        let no_process = PendingWrite { pid: 0, ..p.clone() };
        assert!(no_process.is_live(99) && !no_process.is_live(100), "held by no process: its expiry alone");
        // gc read it expired; its holder renewed it before the claim: the claim misses.
        let seen = index.pending().unwrap().remove(0);
        assert!(!index.renew_pending(&vid, "someone else", 200).unwrap(), "only its owner renews it");
        assert!(index.renew_pending(&vid, "me", 200).unwrap());
        assert!(!index.claim_pending(&seen).unwrap());
        assert!(index.pending().unwrap()[0].is_live(150));
    }

    #[test]
    fn a_pending_record_from_schema_3_is_migrated_and_judged_by_its_process() {
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
        let index = Index::open(dir.path()).unwrap();
        let mut rows = index.pending().unwrap();
        rows.sort_by_key(|p| p.vid.0);
        assert_eq!((rows[0].expires_ns, rows[0].claimed, rows[0].blobs.len()), (0, false, 1));
        assert!(rows[0].is_live(10), "its process runs");
        assert!(!rows[0].is_live(5 + LEGACY_PENDING_MAX_AGE_NS), "past a day the pid was reused");
        assert!(rows[1].claimed && !rows[1].is_live(10), "claimed by an older gc (pid 0)");
        drop(index);
        // Opening it again changes nothing more.
        assert_eq!(Index::open(dir.path()).unwrap().pending().unwrap().len(), 2);
    }

    #[test]
    fn jobs_walk_the_objects_a_page_at_a_time_in_name_order_within_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        {
            let mut conn = index.conn();
            let tx = conn.transaction().unwrap();
            for name in (0..2 * PAGE + 345).map(|i| format!("a/{i:05}")).chain(["a", "a0", "b/1"].map(String::from)) {
                replace_version(&tx, &entry(&name, 1), false).unwrap();
            }
            replace_version(&tx, &entry("gone", 1), true).unwrap();
            tx.commit().unwrap();
        }
        let mut pages = index.object_pages("a/");
        let mut seen = Vec::new();
        while let Some(page) = pages.next_page().unwrap() {
            assert!(page.len() <= PAGE);
            seen.extend(page.into_iter().map(|e| e.name));
        }
        let expected: Vec<String> = (0..2 * PAGE + 345).map(|i| format!("a/{i:05}")).collect();
        assert_eq!(seen, expected);
        let after: Vec<String> = index.objects_page("", Some("a/02344"), 3).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(after, ["a0", "b/1"]);
        let mut tombs = index.tombstone_pages();
        assert_eq!(tombs.next_page().unwrap().unwrap()[0].0, "gone");
        assert!(tombs.next_page().unwrap().is_none());
        assert_eq!(index.total_size().unwrap(), 2 * PAGE as u64 + 345 + 3);
        assert!(index.has_versions().unwrap());
        assert!(!Index::open(tempfile::tempdir().unwrap().path()).unwrap().has_versions().unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn the_state_folder_and_index_are_the_owners_alone_even_when_they_were_not() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".outlast");
        let index = Index::open(&state).unwrap();
        index.save_health(&[("a", HealthStats::default())]).unwrap();
        assert_eq!(mode(&state), 0o700);
        for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
            assert_eq!(mode(&state.join(f)), 0o600, "{f}");
        }
        drop(index);
        // A store made by an older build: world-readable, tightened when opened.
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(state.join("index.sqlite"), std::fs::Permissions::from_mode(0o644)).unwrap();
        Index::open(&state).unwrap();
        assert_eq!((mode(&state), mode(&state.join("index.sqlite"))), (0o700, 0o600));
    }

    #[test]
    fn health_rows_follow_the_configured_providers() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let h = HealthStats { ok: 3, ..Default::default() };
        index.save_health(&[("a", h.clone()), ("b", h.clone())]).unwrap();
        index.save_health(&[("a", h.clone())]).unwrap(); // `b` was removed from the config
        let names: Vec<String> = index.load_health().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a"]);
    }
}
