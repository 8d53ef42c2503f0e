//! The manifest copies a recovery reads, staged until every provider's are in: for each
//! version the highest placement revision, with every provider that holds it.

use std::sync::Mutex;

use outlast_codec::VersionStamp;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::EngineError;

/// A manifest copy a recovery read and opened, staged until every copy is in (a recovery of a
/// large store must not hold them all in memory).
pub(crate) struct StagedCopy {
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
pub(crate) enum Staged {
    /// The first copy, or one of the same revision as the best so far (another holder).
    Held,
    /// An older revision than one staged already: stale.
    Stale,
    /// A newer revision: the copies staged before it (this many holders) are stale.
    Replaced(u64),
}

/// The newest staged version of one name: its best copy's sealed bytes and every provider
/// that holds that revision.
pub(crate) struct StagedVersion {
    /// The object name.
    pub name: String,
    /// The version's manifest blob name.
    pub blob: String,
    /// Sealed manifest of the best revision.
    pub sealed: Vec<u8>,
    /// Providers holding it.
    pub holders: Vec<String>,
}

/// A recovery's staging area.
pub(crate) struct RecoveryStage {
    /// Behind a lock only so that a job's future that holds the stage may move between threads.
    conn: Mutex<Connection>,
}

impl RecoveryStage {
    pub(crate) fn new() -> Result<RecoveryStage, EngineError> {
        let conn = super::open()?;
        conn.execute_batch(
            "CREATE TABLE recover_stage (
                 blob TEXT PRIMARY KEY, name TEXT NOT NULL, time_ns INTEGER NOT NULL, vid BLOB NOT NULL,
                 revision INTEGER NOT NULL, sealed BLOB NOT NULL, holders TEXT NOT NULL);
             CREATE INDEX recover_stage_by_name ON recover_stage (name, time_ns, vid);",
        )?;
        Ok(RecoveryStage { conn: Mutex::new(conn) })
    }

    /// Stages copies in one transaction; for each, what it was beside its version's copies
    /// staged before it (the highest revision is kept, with all of its holders).
    pub(crate) fn stage_copies(&self, copies: &[StagedCopy]) -> Result<Vec<Staged>, EngineError> {
        let mut conn = self.conn.lock().expect("stage lock poisoned");
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
    pub(crate) fn staged_newest(&self, after: Option<&str>, limit: usize) -> Result<Vec<StagedVersion>, EngineError> {
        let conn = self.conn.lock().expect("stage lock poisoned");
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
}
