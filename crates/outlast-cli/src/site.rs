//! `outlast site publish DIR BUCKET`: a folder uploaded as a website. A file whose BLAKE3 is
//! the ETag of the object already there is not sent again; the bucket is created if need be
//! and marked as a website (index page, 404 page, host names) once every page is stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use outlast_engine::{EngineError, Precondition, PutOptions, Store};
use outlast_s3::buckets::{BucketError, Buckets, Website};
use serde::Serialize;

use crate::progress::Bar;

/// How a folder is published.
pub struct Publish {
    pub dir: PathBuf,
    pub bucket: String,
    pub website: Website,
    pub delete: bool,
}

/// What a publish did.
#[derive(Debug, Default, Serialize)]
pub struct Published {
    pub bucket: String,
    /// Files sent (new or changed), and their bytes.
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    /// Files already there with the same bytes.
    pub unchanged: u64,
    /// Objects deleted because the folder no longer has them (`--delete`).
    pub deleted: u64,
    /// Symbolic links left out (a site is the folder's own files).
    pub skipped_links: Vec<String>,
}

/// The files under `dir` by their key (path under it, `/`-separated), with their paths.
fn files(dir: &Path, out: &mut BTreeMap<String, PathBuf>, links: &mut Vec<String>, prefix: &str) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { bail!("{} is not a UTF-8 name, which a URL needs", entry.path().display()) };
        let key = format!("{prefix}{name}");
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            links.push(key);
        } else if kind.is_dir() {
            files(&entry.path(), out, links, &format!("{key}/"))?;
        } else if kind.is_file() {
            out.insert(key, entry.path());
        }
    }
    Ok(())
}

fn blake3_of(path: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(h.finalize().to_hex().to_string())
}

/// Publishes `p.dir` to bucket `p.bucket`.
pub async fn publish(store: &Arc<Store>, p: Publish) -> Result<Published> {
    outlast_s3::buckets::check_bucket_name(&p.bucket)?;
    let mut local = BTreeMap::new();
    let mut report = Published { bucket: p.bucket.clone(), ..Default::default() };
    files(&p.dir, &mut local, &mut report.skipped_links, "")?;
    if !local.contains_key(&p.website.index) {
        eprintln!("outlast: note: the folder has no {} at its top: the site's root will answer 404", p.website.index);
    }
    let prefix = format!("{}/", p.bucket);
    let there: BTreeMap<String, String> =
        store.list(&prefix).await?.into_iter().map(|o| (o.name[prefix.len()..].to_string(), o.etag)).collect();
    // What changed, by content: hashed on blocking threads, the folder read once.
    let mut changed = Vec::new();
    for (key, path) in &local {
        outlast_engine::check_user_name(&format!("{prefix}{key}"))?;
        let path2 = path.clone();
        let hash = tokio::task::spawn_blocking(move || blake3_of(&path2)).await??;
        if there.get(key) == Some(&hash) {
            report.unchanged += 1;
        } else {
            changed.push((key.clone(), path.clone(), std::fs::metadata(path)?.len()));
        }
    }
    let bar = Bar::new(Some(changed.iter().map(|c| c.2).sum()), "publish");
    for (key, path, len) in &changed {
        let file = tokio::fs::File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
        let content_type = Some(mime_guess::from_path(key).first_or_octet_stream().to_string());
        let opts = PutOptions { content_type, ..Default::default() };
        let put = store.put(&format!("{prefix}{key}"), tokio::io::BufReader::with_capacity(1 << 20, file), opts, &bar).await;
        if let Err(e) = put {
            bar.finish();
            return Err(e).with_context(|| format!("publishing {}", path.display()));
        }
        report.uploaded += 1;
        report.uploaded_bytes += len;
    }
    bar.finish();
    if p.delete {
        // Only the very version listed above goes: one written meanwhile (through a gateway,
        // another folder) is not this folder's to remove, nor is a key left out as a link.
        let gone = there.keys().filter(|k| !local.contains_key(*k) && !report.skipped_links.contains(k));
        for key in gone {
            let name = format!("{prefix}{key}");
            let Some(seen) = store.current(&name).await?.filter(|e| Some(&e.etag) == there.get(key)) else { continue };
            match store.remove_if(&name, Precondition::Current(seen.stamp.vid)).await {
                Ok(()) => report.deleted += 1,
                Err(EngineError::NotFound(_) | EngineError::Conflict(_)) => {}
                Err(e) => return Err(e).with_context(|| format!("removing {key}")),
            }
        }
    }
    // Marked as a site once its pages are there, so that it is never served half-published
    // for the first time.
    let buckets = Buckets::of(store);
    match buckets.create(&p.bucket, false).await {
        Ok(_) | Err(BucketError::Exists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let website = p.website.clone();
    buckets.update(&p.bucket, |r| r.website = Some(website.clone())).await?;
    Ok(report)
}
