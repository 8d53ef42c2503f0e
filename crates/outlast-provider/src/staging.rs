//! What a provider has half-written. A local disk writes each blob to a temporary file under
//! [`TEMP_PREFIX`] inside its root (so the final rename stays on one file system) and renames
//! it into place once complete: a crash leaves the temporary file, never a torn blob under
//! the blob's name. Other providers make a blob appear whole or not at all (an upload never
//! completed is the provider's to expire). gc asks here, and never needs to know the scheme.

use crate::error::ProviderError;
use crate::provider::{BlobEntry, Provider};

/// Where a local-disk provider keeps blobs being written; gc removes what a crash left there.
pub const TEMP_PREFIX: &str = "t/";

/// Longest random suffix of a temporary file's name.
const RANDOM_MAX: usize = 32;

impl Provider {
    /// The temporary files of blobs being written here, by this process or any other, or
    /// left by a crash (none on providers that write a blob whole).
    pub async fn staged(&self) -> Result<Vec<BlobEntry>, ProviderError> {
        if self.scheme() != "fs" {
            return Ok(Vec::new());
        }
        self.list(TEMP_PREFIX).await
    }
}

/// The base name (what follows the last `/` of the blob's name) of the blob a temporary file
/// `t/BASE.RANDOM` is to become; `None` for any other name.
pub fn staged_target(name: &str) -> Option<&str> {
    let (base, random) = name.strip_prefix(TEMP_PREFIX)?.rsplit_once('.')?;
    let random_ok = !random.is_empty() && random.len() <= RANDOM_MAX && random.bytes().all(|b| b.is_ascii_alphanumeric());
    (random_ok && !base.is_empty() && !base.contains('/')).then_some(base)
}

/// A blob name as a temporary file of it names it: what follows its last `/`.
pub fn staged_base(blob: &str) -> &str {
    blob.rsplit('/').next().unwrap_or(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_file_names_the_blob_it_becomes() {
        assert_eq!(staged_target("t/0123abcd.Ab12xY9z"), Some("0123abcd"));
        assert_eq!(staged_target(&format!("t/{}.x", staged_base("s/0123abcd"))), Some("0123abcd"));
        for other in ["s/0123abcd", "t/0123abcd", "t/0123abcd.", "t/.Ab12", "t/a/b.Ab12", "t/a.b-c", "t/a.b_c"] {
            assert_eq!(staged_target(other), None, "{other}");
        }
    }
}
