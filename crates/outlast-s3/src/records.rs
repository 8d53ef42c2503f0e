//! The gateway's records (buckets, access keys), kept as small JSON objects under
//! [`outlast_engine::RESERVED_PREFIX`] (decision 0007): sealed, spread and recovered like any
//! object, and seen at once by every gateway on the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use outlast_codec::VersionId;
use outlast_engine::progress::NoProgress;
use outlast_engine::{EngineError, Precondition, PutOptions, Store, WriteSink};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::buckets::BucketRecord;

/// Where bucket records live: `.outlast/bucket/NAME`.
pub const BUCKETS: &str = ".outlast/bucket/";
/// Where access keys live: `.outlast/key/ID`.
pub const KEYS: &str = ".outlast/key/";

/// What a key may do with a bucket; each level includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// List and read objects.
    Read,
    /// Also write and delete objects.
    Write,
    /// Also create and delete the bucket and change its settings.
    Admin,
}

impl std::str::FromStr for Access {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Access::Read),
            "write" => Ok(Access::Write),
            "admin" => Ok(Access::Admin),
            other => Err(format!("`{other}` is not an access level (read, write or admin)")),
        }
    }
}

/// One bucket (or `*`, every bucket) a key may use, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// A bucket name, or `*` for all of them, present and future.
    pub bucket: String,
    /// What the key may do there.
    pub access: Access,
}

/// An access key: SigV4 needs the secret on the server, so it is kept sealed in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessKey {
    /// The public id a client sends (`OL` and 18 capitals or digits).
    pub access_key_id: String,
    /// The secret a client signs with.
    pub secret_access_key: String,
    /// When it was made (ns since the Unix epoch).
    pub created_ns: u64,
    /// What it may do.
    pub grants: Vec<Grant>,
}

impl AccessKey {
    /// A fresh key with `grants`.
    pub fn generate(grants: Vec<Grant>) -> AccessKey {
        const ID: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rngs::OsRng;
        let pick = |set: &[u8], n: usize, rng: &mut rand::rngs::OsRng| -> String {
            (0..n).map(|_| set[rng.gen_range(0..set.len())] as char).collect()
        };
        AccessKey {
            access_key_id: format!("OL{}", pick(ID, 18, &mut rng)),
            secret_access_key: pick(SECRET, 40, &mut rng),
            created_ns: now_ns(),
            grants,
        }
    }

    /// Whether it may do `need` on `bucket`.
    pub fn allows(&self, bucket: &str, need: Access) -> bool {
        self.grants.iter().any(|g| (g.bucket == "*" || g.bucket == bucket) && g.access >= need)
    }

    /// Whether it may do anything with `bucket` (what a bucket listing shows it).
    pub fn sees(&self, bucket: &str) -> bool {
        self.allows(bucket, Access::Read)
    }
}

/// Whether `id` has the shape of an access key id (so that it is safe in a record's name).
pub fn is_key_id(id: &str) -> bool {
    (4..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Reads and writes records, keeping each one read in memory under its version id: the index
/// says on every use which version is current, so a change through another gateway is seen at
/// the next request, and an unchanged record costs one local lookup, not k provider reads.
pub struct Records {
    store: Arc<Store>,
    cache: Mutex<HashMap<String, (VersionId, Bytes)>>,
}

impl Records {
    /// Records of `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Records { store, cache: Mutex::default() }
    }

    /// The store they live in.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The record `name`, if there is one.
    pub async fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, EngineError> {
        Ok(self.get_versioned(name).await?.map(|(_, v)| v))
    }

    /// The record `name` with its version id, which a change is conditional on.
    pub async fn get_versioned<T: DeserializeOwned>(&self, name: &str) -> Result<Option<(VersionId, T)>, EngineError> {
        let Some(entry) = self.store.current(name).await? else {
            self.cache.lock().expect("cache lock").remove(name);
            return Ok(None);
        };
        let vid = entry.stamp.vid;
        let cached = self.cache.lock().expect("cache lock").get(name).filter(|(v, _)| *v == vid).map(|(_, b)| b.clone());
        let bytes = match cached {
            Some(b) => b,
            None => {
                let mut sink = WriteSink(Vec::with_capacity(entry.size as usize));
                self.store.get_version_into(&entry, None, &mut sink, &NoProgress).await?;
                let bytes = Bytes::from(sink.0);
                self.cache.lock().expect("cache lock").insert(name.to_string(), (vid, bytes.clone()));
                bytes
            }
        };
        serde_json::from_slice(&bytes)
            .map(|v| Some((vid, v)))
            .map_err(|e| EngineError::State(format!("the gateway record `{name}` does not parse: {e}")))
    }

    /// Writes the record `name` if `precondition` holds ([`EngineError::Conflict`] if not).
    pub async fn put<T: Serialize>(&self, name: &str, value: &T, precondition: Precondition) -> Result<(), EngineError> {
        let body = serde_json::to_vec_pretty(value).expect("records serialize");
        let opts = PutOptions { content_type: Some("application/json".into()), precondition, ..Default::default() };
        self.store.put(name, &body[..], opts, &NoProgress).await?;
        Ok(())
    }

    /// Removes the record `name`.
    pub async fn remove(&self, name: &str) -> Result<(), EngineError> {
        self.cache.lock().expect("cache lock").remove(name);
        self.store.remove(name).await
    }

    /// The names after `prefix` of the records under it, in order.
    pub async fn names(&self, prefix: &str) -> Result<Vec<String>, EngineError> {
        Ok(self.store.list(prefix).await?.into_iter().map(|o| o.name[prefix.len()..].to_string()).collect())
    }

    /// The bucket `name`, if it exists.
    pub async fn bucket(&self, name: &str) -> Result<Option<BucketRecord>, EngineError> {
        self.get(&format!("{BUCKETS}{name}")).await
    }

    /// The access key `id`, if it exists.
    pub async fn key(&self, id: &str) -> Result<Option<AccessKey>, EngineError> {
        if !is_key_id(id) {
            return Ok(None);
        }
        self.get(&format!("{KEYS}{id}")).await
    }
}

/// Makes an access key with `grants` and stores it.
pub async fn create_key(store: &Arc<Store>, grants: Vec<Grant>) -> Result<AccessKey, EngineError> {
    let key = AccessKey::generate(grants);
    Records::new(store.clone()).put(&format!("{KEYS}{}", key.access_key_id), &key, Precondition::Absent).await?;
    Ok(key)
}

/// Every access key of the store.
pub async fn list_keys(store: &Arc<Store>) -> Result<Vec<AccessKey>, EngineError> {
    let records = Records::new(store.clone());
    let mut keys = Vec::new();
    for id in records.names(KEYS).await? {
        if let Some(k) = records.key(&id).await? {
            keys.push(k);
        }
    }
    Ok(keys)
}

/// Deletes the access key `id`, if there is one (`false` if not): requests signed with it are
/// refused from then on.
pub async fn delete_key(store: &Arc<Store>, id: &str) -> Result<bool, EngineError> {
    let records = Records::new(store.clone());
    if records.key(id).await?.is_none() {
        return Ok(false);
    }
    records.remove(&format!("{KEYS}{id}")).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_covers_its_bucket_and_the_levels_below_it() {
        let mut key = AccessKey::generate(vec![Grant { bucket: "site".into(), access: Access::Write }]);
        assert!(key.allows("site", Access::Read) && key.allows("site", Access::Write));
        assert!(!key.allows("site", Access::Admin) && !key.allows("other", Access::Read));
        key.grants.push(Grant { bucket: "*".into(), access: Access::Read });
        assert!(key.allows("other", Access::Read) && !key.allows("other", Access::Write));
        assert!(is_key_id(&key.access_key_id) && key.access_key_id.len() == 20 && key.secret_access_key.len() == 40);
        assert!(!is_key_id("../x") && !is_key_id(""));
    }
}
