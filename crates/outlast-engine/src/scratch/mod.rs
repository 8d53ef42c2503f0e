//! A job's scratch space on local disk: what gc and recover list from the providers (millions
//! of rows for a large store, more than a job should hold in memory) and the manifest copies a
//! recovery reads. Each stage is a private SQLite database of its own, in a temporary file that
//! SQLite deletes when the stage is dropped (or its process dies), beyond the page cache.
//!
//! Scratch is not the index: it is per job and per machine, whatever backend the index has.

pub(crate) mod listed;
pub(crate) mod recovery;

use rusqlite::Connection;

use crate::error::EngineError;

/// Opens a private temporary database (SQLite's empty file name), written without syncs:
/// nothing in it outlives the job.
fn open() -> Result<Connection, EngineError> {
    let conn = Connection::open("")?;
    conn.pragma_update(None, "journal_mode", "OFF")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "temp_store", "FILE")?;
    Ok(conn)
}
