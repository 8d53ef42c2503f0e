//! What the providers list, staged on disk: gc and recover see every blob of every provider at
//! once.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use outlast_codec::names;
use outlast_provider::{BlobEntry, Provider, ProviderError};
use rusqlite::{params, Connection};

use crate::error::EngineError;

/// Rows written per transaction while a listing comes in.
const FLUSH_ROWS: usize = 4096;
/// Rows read per page.
pub(crate) const PAGE_ROWS: usize = 2048;

/// Which of this format's blob shapes a listed name has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Shard = 0,
    Manifest = 1,
}

impl Shape {
    fn prefix(self) -> &'static str {
        match self {
            Shape::Shard => names::SHARD_PREFIX,
            Shape::Manifest => names::MANIFEST_PREFIX,
        }
    }

    fn from_code(code: i64) -> Shape {
        if code == Shape::Manifest as i64 {
            Shape::Manifest
        } else {
            Shape::Shard
        }
    }
}

/// One listed shard or manifest copy: its provider (by position in the store's providers),
/// the 16 bytes of its name, its size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedBlob {
    pub provider: usize,
    pub shape: Shape,
    pub tag: [u8; 16],
    pub size: u64,
    pub modified: Option<SystemTime>,
}

impl ListedBlob {
    /// The listed blob, if its name is a shard's or a manifest's (`None` for any other name).
    pub fn parse(provider: usize, e: &BlobEntry) -> Option<ListedBlob> {
        let shape = [Shape::Shard, Shape::Manifest].into_iter().find(|s| names::has_shape(&e.name, s.prefix()))?;
        let tag = hex::decode(&e.name[shape.prefix().len()..]).ok()?.try_into().ok()?;
        Some(ListedBlob { provider, shape, tag, size: e.size, modified: e.modified })
    }

    /// The blob's name.
    pub fn name(&self) -> String {
        format!("{}{}", self.shape.prefix(), hex::encode(self.tag))
    }
}

/// What taking one provider's listing found besides the staged rows.
#[derive(Debug, Default)]
pub(crate) struct TakenListing {
    /// Names of other shapes than a shard's or a manifest's.
    pub foreign: u64,
    /// Why a prefix could not be listed whole (its rows so far are staged).
    pub failed: Vec<ProviderError>,
}

/// A listing staged on disk.
pub(crate) struct ListedStage {
    /// Behind a lock only so that a job's future that holds the stage may move between threads.
    conn: Mutex<Connection>,
    batch: Vec<ListedBlob>,
    /// Whether the lookup index was built (after the last row came in).
    sealed: bool,
}

impl ListedStage {
    pub fn new() -> Result<ListedStage, EngineError> {
        let conn = super::open()?;
        conn.execute_batch(
            "CREATE TABLE listed (
                 provider INTEGER NOT NULL, shape INTEGER NOT NULL, tag BLOB NOT NULL,
                 size INTEGER NOT NULL, modified_ns INTEGER);",
        )?;
        Ok(ListedStage { conn: Mutex::new(conn), batch: Vec::with_capacity(FLUSH_ROWS), sealed: false })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("stage lock poisoned")
    }

    /// Adds a listed blob (written in batches).
    pub fn push(&mut self, b: ListedBlob) -> Result<(), EngineError> {
        self.batch.push(b);
        if self.batch.len() >= FLUSH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let conn = self.conn.get_mut().expect("stage lock poisoned");
        let tx = conn.transaction()?;
        {
            let mut st =
                tx.prepare_cached("INSERT INTO listed (provider, shape, tag, size, modified_ns) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for b in self.batch.drain(..) {
                let modified = b.modified.map(|m| m.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos() as i64);
                st.execute(params![b.provider as i64, b.shape as i64, &b.tag[..], b.size as i64, modified])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Stages every shard and manifest provider `p` (at position `at`) lists; names of other
    /// shapes are counted, not staged. A prefix that cannot be listed (whole) is said in
    /// `failed`, and the other is still listed.
    pub async fn take_listing(&mut self, at: usize, p: &Provider) -> Result<TakenListing, EngineError> {
        let mut taken = TakenListing::default();
        for prefix in [names::SHARD_PREFIX, names::MANIFEST_PREFIX] {
            let mut listing = p.listing(prefix);
            loop {
                match listing.next().await {
                    Ok(Some(e)) => match ListedBlob::parse(at, &e) {
                        Some(b) => self.push(b)?,
                        None => taken.foreign += 1,
                    },
                    Ok(None) => break,
                    Err(e) => {
                        taken.failed.push(e);
                        break;
                    }
                }
            }
        }
        Ok(taken)
    }

    /// Ends the intake: writes what is batched and indexes the rows for [`ListedStage::size_of`].
    pub fn seal(&mut self) -> Result<(), EngineError> {
        self.flush()?;
        if !self.sealed {
            self.conn().execute_batch("CREATE INDEX listed_by_tag ON listed (shape, tag, provider);")?;
            self.sealed = true;
        }
        Ok(())
    }

    /// Up to `limit` rows after row `after` (0 for the first page), of `shape` or of both, in
    /// the order listed; each with its row number for the next page.
    pub fn page(&self, shape: Option<Shape>, after: i64, limit: usize) -> Result<Vec<(i64, ListedBlob)>, EngineError> {
        debug_assert!(self.batch.is_empty(), "pages are read after the intake ends");
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT rowid, provider, shape, tag, size, modified_ns FROM listed
             WHERE rowid > ?1 AND (?2 IS NULL OR shape = ?2) ORDER BY rowid LIMIT ?3",
        )?;
        let rows = st.query_map(params![after, shape.map(|s| s as i64), limit as i64], |r| {
            let tag: Vec<u8> = r.get(3)?;
            let modified: Option<i64> = r.get(5)?;
            Ok((
                r.get::<_, i64>(0)?,
                ListedBlob {
                    provider: r.get::<_, i64>(1)? as usize,
                    shape: Shape::from_code(r.get(2)?),
                    tag: tag.try_into().unwrap_or([0; 16]),
                    size: r.get::<_, i64>(4)? as u64,
                    modified: modified.map(|ns| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64)),
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Walks every row of `shape` (or of both) a page at a time.
    pub fn pages(&self, shape: Option<Shape>) -> StagePages<'_> {
        StagePages { stage: self, shape, after: 0 }
    }

    /// The size `provider` listed for the blob `name` of `shape`, if it listed it.
    pub fn size_of(&self, provider: usize, shape: Shape, name: &str) -> Result<Option<u64>, EngineError> {
        debug_assert!(self.sealed, "lookups follow the intake");
        let Some(tag) = name.strip_prefix(shape.prefix()).and_then(|t| hex::decode(t).ok()) else { return Ok(None) };
        let conn = self.conn();
        let mut st = conn.prepare_cached("SELECT size FROM listed WHERE shape = ?1 AND tag = ?2 AND provider = ?3 LIMIT 1")?;
        let mut rows = st.query_map(params![shape as i64, tag, provider as i64], |r| r.get::<_, i64>(0))?;
        Ok(rows.next().transpose()?.map(|s| s as u64))
    }

    /// How many rows of `shape` were staged from `provider`.
    pub fn count(&self, provider: usize, shape: Shape) -> Result<u64, EngineError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM listed WHERE provider = ?1 AND shape = ?2",
            params![provider as i64, shape as i64],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }
}

/// The pages of a stage, in listing order.
pub(crate) struct StagePages<'s> {
    stage: &'s ListedStage,
    shape: Option<Shape>,
    after: i64,
}

impl<'s> StagePages<'s> {
    /// The next page, or `None` after the last.
    pub fn next_page(&mut self) -> Result<Option<Vec<ListedBlob>>, EngineError> {
        let rows = self.stage.page(self.shape, self.after, PAGE_ROWS)?;
        let Some((last, _)) = rows.last() else { return Ok(None) };
        self.after = *last;
        Ok(Some(rows.into_iter().map(|(_, b)| b).collect()))
    }

    /// The rows one at a time, a page read at once.
    pub fn rows(mut self) -> impl Iterator<Item = Result<ListedBlob, EngineError>> + use<'s> {
        let mut page = std::collections::VecDeque::new();
        std::iter::from_fn(move || {
            if page.is_empty() {
                match self.next_page() {
                    Ok(Some(next)) => page.extend(next),
                    Ok(None) => return None,
                    Err(e) => return Some(Err(e)),
                }
            }
            page.pop_front().map(Ok)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, size: u64) -> BlobEntry {
        BlobEntry { name: name.into(), size, modified: Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(1_234_567_891)) }
    }

    #[test]
    fn only_shard_and_manifest_names_are_staged_and_they_come_back_whole() {
        for stranger in ["s/holiday.jpg", "m/0123456789ABCDEF0123456789ABCDEF", "t/0123456789abcdef0123456789abcdef.x", "x"] {
            assert_eq!(ListedBlob::parse(0, &entry(stranger, 1)), None, "{stranger}");
        }
        let mut stage = ListedStage::new().unwrap();
        let names: Vec<String> = (0..5000u32)
            .map(|i| format!("{}{:032x}", if i % 3 == 0 { names::MANIFEST_PREFIX } else { names::SHARD_PREFIX }, i))
            .collect();
        for (i, name) in names.iter().enumerate() {
            stage.push(ListedBlob::parse(i % 4, &entry(name, i as u64)).unwrap()).unwrap();
        }
        stage.seal().unwrap();
        let mut back = Vec::new();
        let mut pages = stage.pages(None);
        while let Some(page) = pages.next_page().unwrap() {
            back.extend(page);
        }
        assert_eq!(back.len(), names.len());
        for (i, (b, name)) in back.iter().zip(&names).enumerate() {
            assert_eq!((b.name(), b.provider, b.size), (name.clone(), i % 4, i as u64));
            assert_eq!(b.modified, entry(name, 0).modified);
        }
        assert_eq!((0..4).map(|p| stage.count(p, Shape::Manifest).unwrap()).sum::<u64>(), 1667);
        let mut manifests = 0;
        let mut pages = stage.pages(Some(Shape::Manifest));
        while let Some(page) = pages.next_page().unwrap() {
            assert!(page.iter().all(|b| b.shape == Shape::Manifest));
            manifests += page.len();
        }
        assert_eq!(manifests, 1667);
        assert_eq!(stage.size_of(1, Shape::Shard, &names[1]).unwrap(), Some(1));
        assert_eq!(stage.size_of(2, Shape::Shard, &names[1]).unwrap(), None, "listed on provider 1 only");
        assert_eq!(stage.size_of(0, Shape::Manifest, &names[1]).unwrap(), None);
    }

    #[test]
    fn two_stages_of_one_process_are_apart() {
        let mut a = ListedStage::new().unwrap();
        let mut b = ListedStage::new().unwrap();
        a.push(ListedBlob::parse(0, &entry(&format!("s/{:032x}", 1), 1)).unwrap()).unwrap();
        a.seal().unwrap();
        b.seal().unwrap();
        assert_eq!((a.count(0, Shape::Shard).unwrap(), b.count(0, Shape::Shard).unwrap()), (1, 0));
    }
}
