//! The S3 operations over the store: buckets are names with a record (decision 0007), objects
//! are the store's objects named `BUCKET/KEY`, read and written through the engine as bodies
//! stream.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use outlast_engine::index::IndexEntry;
use outlast_engine::{BodyMd5, ByteRange, EngineError, ObjectInfo, Precondition, PutOptions, Store};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};

use crate::body::{read_version, BodyFault, CheckedBody, Declared};
use crate::buckets::{BucketError, BucketRecord, Buckets, CorsRule, Website};
use crate::error::s3_error;
use crate::records::{now_ns, Access, Records, BUCKETS};
use crate::uploads::{upload_id, UploadError, UploadRecord, Uploads, MAX_PART_NUMBER};

/// Longest S3 key (S3's limit).
const MAX_KEY_BYTES: usize = 1024;
/// Keys a listing returns at most per page.
const MAX_KEYS: usize = 1000;

/// A page's size as asked (max-keys, max-parts, max-uploads), within S3's 0..=1000.
fn page_max(asked: Option<i32>) -> usize {
    asked.map_or(MAX_KEYS, |m| m.clamp(0, MAX_KEYS as i32) as usize)
}

/// Keeps the first `max` of `items`; whether any were left out (the page is truncated).
fn cut<T>(items: &mut Vec<T>, max: usize) -> bool {
    let truncated = items.len() > max;
    items.truncate(max);
    truncated
}

/// The S3 face of one store.
pub struct Gateway {
    store: Arc<Store>,
    records: Arc<Records>,
    buckets: Buckets,
    uploads: Arc<Uploads>,
}

impl Gateway {
    /// A gateway over `store`, reading its records through `records` and its multipart
    /// uploads through `uploads`.
    pub fn new(store: Arc<Store>, records: Arc<Records>, uploads: Arc<Uploads>) -> Self {
        Gateway { store, buckets: Buckets::new(records.clone()), records, uploads }
    }

    async fn bucket(&self, bucket: &str) -> S3Result<BucketRecord> {
        match self.records.bucket(bucket).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(s3_error!(NoSuchBucket, "The specified bucket does not exist: {bucket}")),
            Err(e) => Err(s3_error(e, bucket)),
        }
    }

    /// The store name of `key` in `bucket`, once both are known good.
    async fn object_name(&self, bucket: &str, key: &str) -> S3Result<String> {
        self.bucket(bucket).await?;
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(s3_error!(KeyTooLongError, "keys are 1 to {MAX_KEY_BYTES} bytes"));
        }
        if key.contains('\0') {
            return Err(s3_error!(InvalidArgument, "a key may not contain NUL"));
        }
        Ok(format!("{bucket}/{key}"))
    }

    /// The version of `key` a read serves, once `conditions` (If-Match, If-Unmodified-Since,
    /// If-None-Match, If-Modified-Since) allow it, and its description.
    async fn to_read(&self, bucket: &str, key: &str, conditions: ReadConditions<'_>) -> S3Result<(IndexEntry, ObjectInfo)> {
        let name = self.object_name(bucket, key).await?;
        let Some(entry) = self.current(&name, key).await? else {
            return Err(s3_error!(NoSuchKey, "The specified key does not exist: {key}"));
        };
        check_read_conditions(&entry, conditions)?;
        let info = self.store.describe(&entry).map_err(|e| s3_error(e, key))?;
        Ok((entry, info))
    }

    async fn current(&self, name: &str, key: &str) -> S3Result<Option<IndexEntry>> {
        self.store.current(name).await.map_err(|e| s3_error(e, key))
    }

    /// What a write expects of the current version: If-None-Match: * means none, If-Match an
    /// ETag means that version; decided by the index at the commit.
    async fn write_precondition(
        &self,
        name: &str,
        key: &str,
        if_match: Option<&IfMatch>,
        if_none_match: Option<&IfNoneMatch>,
    ) -> S3Result<Precondition> {
        if let Some(cond) = if_none_match {
            if !cond.is_any() {
                return Err(s3_error!(NotImplemented, "If-None-Match on a write takes only *"));
            }
            return Ok(Precondition::Absent);
        }
        let Some(cond) = if_match else { return Ok(Precondition::Any) };
        let current = self.current(name, key).await?;
        match (current, cond.as_etag()) {
            (Some(e), None) => Ok(Precondition::Current(e.stamp.vid)),
            (Some(e), Some(want)) if want.value() == e.etag => Ok(Precondition::Current(e.stamp.vid)),
            (None, _) => Err(s3_error!(NoSuchKey, "The specified key does not exist: {key}")),
            _ => Err(s3_error!(PreconditionFailed, "At least one of the preconditions you specified did not hold")),
        }
    }

    async fn put_body(
        &self,
        name: &str,
        key: &str,
        body: StreamingBlob,
        declared: Declared,
        opts: PutOptions,
    ) -> S3Result<Stored> {
        let fault = BodyFault::default();
        // The engine takes the MD5 anyway (the ETag), so a declared Content-MD5 is checked
        // there, off the path that reads the body, rather than hashed a second time.
        let md5 = declared.md5_bytes()?.map_or(BodyMd5::Hash, BodyMd5::Expect);
        let checked = CheckedBody::new(body, declared, fault.clone());
        let reader = tokio_util::io::StreamReader::new(checked);
        let unconditional = matches!(opts.precondition, Precondition::Any);
        match self.store.put(name, reader, PutOptions { md5, ..opts }, &outlast_engine::progress::NoProgress).await {
            Ok(r) => Ok(Stored { etag: r.etag, size: r.size }),
            // A newer PUT of the key, running at the same time, committed first. S3 answers
            // both: this one took effect just before the newer one, which replaced it. (A
            // conditional write stays refused: its condition was judged against neither.)
            Err(EngineError::Superseded { size, etag, .. }) if unconditional => Ok(Stored { etag, size }),
            // The body's own fault first: the engine only saw its source fail.
            Err(e) => Err(fault.take().unwrap_or_else(|| s3_error(e, key))),
        }
    }

    /// The version a copy reads: `source` must be readable by the request's key, exist, and
    /// meet the copy's conditions (a 304 becomes 412, as S3 has it). Returns it and its key.
    async fn copy_source(
        &self,
        credentials: Option<&s3s::auth::Credentials>,
        source: &CopySource,
        conditions: ReadConditions<'_>,
    ) -> S3Result<(IndexEntry, String)> {
        let CopySource::Bucket { bucket: src_bucket, key: src_key, .. } = source else {
            return Err(s3_error!(NotImplemented, "copies take a bucket/key source"));
        };
        // The grant check saw the destination; the source must be readable by the same key.
        let readable = match credentials {
            Some(c) => self
                .records
                .key(&c.access_key)
                .await
                .map_err(|e| s3_error(e, src_key))?
                .is_some_and(|k| k.allows(src_bucket, Access::Read)),
            None => false,
        };
        if !readable {
            return Err(s3_error!(AccessDenied, "this access key may not read the copy's source"));
        }
        let src_name = self.object_name(src_bucket, src_key).await?;
        let Some(src) = self.current(&src_name, src_key).await? else {
            return Err(s3_error!(NoSuchKey, "The specified key does not exist: {src_key}"));
        };
        check_read_conditions(&src, conditions).map_err(|e| {
            if *e.code() == S3ErrorCode::NotModified {
                s3_error!(PreconditionFailed, "the copy source was not modified")
            } else {
                e
            }
        })?;
        Ok((src, src_key.to_string()))
    }
}

/// What a client is told of a body it wrote.
struct Stored {
    etag: String,
    size: u64,
}

/// The `x-amz-checksum-*` values a PutObject or UploadPart input declares.
macro_rules! declared_sums {
    ($i:expr) => {
        Checksum {
            checksum_crc32: $i.checksum_crc32,
            checksum_crc32c: $i.checksum_crc32c,
            checksum_sha1: $i.checksum_sha1,
            checksum_sha256: $i.checksum_sha256,
            checksum_crc64nvme: $i.checksum_crc64nvme,
            ..Default::default()
        }
    };
}

/// The source conditions of a CopyObject or UploadPartCopy input, as [`ReadConditions`].
macro_rules! copy_conditions {
    ($i:expr) => {
        (
            $i.copy_source_if_match.as_ref(),
            $i.copy_source_if_unmodified_since.as_ref(),
            $i.copy_source_if_none_match.as_ref(),
            $i.copy_source_if_modified_since.as_ref(),
        )
    };
}

/// The body of a request that sent none.
fn empty_body() -> StreamingBlob {
    StreamingBlob::wrap(futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>())
}

fn last_modified(ns: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_nanos(ns))
}

fn seconds(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

/// A read's If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since.
type ReadConditions<'a> = (Option<&'a IfMatch>, Option<&'a Timestamp>, Option<&'a IfNoneMatch>, Option<&'a Timestamp>);

/// RFC 7232's order for reads: If-Match, then If-Unmodified-Since, then If-None-Match, then
/// If-Modified-Since (each later one only when the earlier is absent).
fn check_read_conditions(e: &IndexEntry, conditions: ReadConditions<'_>) -> S3Result<()> {
    let (if_match, if_unmodified_since, if_none_match, if_modified_since) = conditions;
    let modified = (e.stamp.time_ns / 1_000_000_000) as i64;
    let matches = |c: &ETagCondition| c.is_any() || c.as_etag().is_some_and(|t| t.value() == e.etag);
    let failed = || s3_error!(PreconditionFailed, "At least one of the preconditions you specified did not hold");
    match (if_match, if_unmodified_since) {
        (Some(c), _) if !matches(c) => return Err(failed()),
        (None, Some(t)) if modified > seconds(t) => return Err(failed()),
        _ => {}
    }
    match (if_none_match, if_modified_since) {
        (Some(c), _) if matches(c) => Err(S3Error::new(S3ErrorCode::NotModified)),
        (None, Some(t)) if modified <= seconds(t) => Err(S3Error::new(S3ErrorCode::NotModified)),
        _ => Ok(()),
    }
}

fn metadata_of(info: &ObjectInfo) -> Option<Metadata> {
    (!info.metadata.is_empty()).then(|| info.metadata.iter().cloned().collect())
}

fn sorted(m: Option<Metadata>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = m.unwrap_or_default().into_iter().collect();
    v.sort();
    v
}

fn declared_of(
    md5: Option<String>,
    sums: Checksum,
    headers: &http::HeaderMap,
    trailers: Option<s3s::TrailingHeaders>,
    length: Option<i64>,
) -> Declared {
    let trailer_names = headers
        .get_all("x-amz-trailer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .collect();
    Declared { md5, sums, trailer_names, trailers, length: length.and_then(|l| u64::try_from(l).ok()) }
}

/// An opaque continuation token for the store name a listing stopped after.
fn token_of(after: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after)
}

fn after_of_token(token: &str) -> S3Result<String> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))
}

/// How a listing shows keys: as they are, or URL-encoded when the client asked for
/// `encoding-type=url` (the aws CLI always does, and decodes what it gets: a key with `%`, `+`
/// or a space would come back changed if it were not encoded).
#[derive(Clone, Copy)]
struct Encoding {
    url: bool,
}

impl Encoding {
    fn of(asked: Option<&EncodingType>) -> Encoding {
        Encoding { url: asked.is_some_and(|e| e.as_str().eq_ignore_ascii_case(EncodingType::URL)) }
    }

    fn apply(self, s: String) -> String {
        if !self.url {
            return s;
        }
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    fn objects(self, objects: Vec<Object>) -> Vec<Object> {
        objects.into_iter().map(|o| Object { key: o.key.map(|k| self.apply(k)), ..o }).collect()
    }

    fn prefixes(self, prefixes: Vec<String>) -> Vec<CommonPrefix> {
        prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(self.apply(p)) }).collect()
    }
}

/// One page of a listing: keys and common prefixes in name order.
struct Listed {
    objects: Vec<Object>,
    prefixes: Vec<String>,
    /// The store name to go on after, when there is more.
    next: Option<String>,
}

impl Gateway {
    /// Lists `bucket` from the index by pages, folding keys that share a prefix up to
    /// `delimiter` into one common prefix and skipping past the rest of it at once.
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<String>,
        max: usize,
    ) -> S3Result<Listed> {
        let base = format!("{bucket}/");
        let full_prefix = format!("{base}{prefix}");
        let mut out = Listed { objects: Vec::new(), prefixes: Vec::new(), next: None };
        let mut after = after.filter(|a| a.as_str() >= full_prefix.as_str());
        let delimiter = delimiter.filter(|d| !d.is_empty());
        loop {
            let page = self
                .store
                .index()
                .objects_page(&full_prefix, after.as_deref(), MAX_KEYS)
                .await
                .map_err(|e| s3_error(e, bucket))?;
            let last_page = page.len() < MAX_KEYS;
            for e in page {
                // Under a common prefix already returned (the rest of this page may be).
                if after.as_deref().is_some_and(|a| e.name.as_str() <= a) {
                    continue;
                }
                if out.objects.len() + out.prefixes.len() >= max {
                    out.next = after;
                    return Ok(out);
                }
                let key = &e.name[base.len()..];
                if let Some(d) = delimiter {
                    if let Some(i) = key[prefix.len()..].find(d) {
                        let common = &key[..prefix.len() + i + d.len()];
                        out.prefixes.push(common.to_string());
                        // Past every name under it: the largest character after it.
                        after = Some(format!("{base}{common}{}", char::MAX));
                        continue;
                    }
                }
                out.objects.push(Object {
                    key: Some(key.to_string()),
                    size: Some(e.size as i64),
                    e_tag: Some(ETag::Strong(e.etag.clone())),
                    last_modified: Some(last_modified(e.stamp.time_ns)),
                    storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
                    ..Default::default()
                });
                after = Some(e.name.clone());
            }
            if last_page {
                return Ok(out);
            }
        }
    }
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let key = match &req.credentials {
            Some(c) => self.records.key(&c.access_key).await.map_err(|e| s3_error(e, &c.access_key))?,
            None => None,
        };
        let mut buckets = Vec::new();
        for name in self.records.names(BUCKETS).await.map_err(|e| s3_error(e, ""))? {
            if !key.as_ref().is_some_and(|k| k.sees(&name)) {
                continue;
            }
            if let Ok(Some(r)) = self.records.bucket(&name).await {
                buckets.push(Bucket { name: Some(name), creation_date: Some(last_modified(r.created_ns)), ..Default::default() });
            }
        }
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), ..Default::default() }))
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let bucket = &req.input.bucket;
        let public = req.input.acl.as_ref().is_some_and(|a| a.as_str() == BucketCannedACL::PUBLIC_READ);
        self.buckets.create(bucket, public).await.map_err(|e| bucket_error(e, bucket))?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{bucket}")) }))
    }

    async fn put_bucket_acl(&self, req: S3Request<PutBucketAclInput>) -> S3Result<S3Response<PutBucketAclOutput>> {
        let bucket = &req.input.bucket;
        // A bucket is readable by its keys' grants, and by anyone when public: the canned
        // ACLs that say one or the other are the ones taken.
        let public = match req.input.acl.as_ref().map(|a| a.as_str()) {
            Some(BucketCannedACL::PUBLIC_READ) => true,
            Some(BucketCannedACL::PRIVATE) => false,
            _ => return Err(s3_error!(NotImplemented, "only the canned ACLs private and public-read are taken")),
        };
        self.buckets.update(bucket, |r| r.public = public).await.map_err(|e| bucket_error(e, bucket))?;
        Ok(S3Response::new(PutBucketAclOutput::default()))
    }

    async fn get_bucket_acl(&self, req: S3Request<GetBucketAclInput>) -> S3Result<S3Response<GetBucketAclOutput>> {
        let record = self.bucket(&req.input.bucket).await?;
        let owner = Owner { id: Some("outlast".into()), display_name: Some("outlast".into()) };
        let mut grants = vec![Grant {
            grantee: Some(Grantee {
                id: owner.id.clone(),
                display_name: owner.display_name.clone(),
                type_: Type::from_static(Type::CANONICAL_USER),
                email_address: None,
                uri: None,
            }),
            permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
        }];
        if record.public {
            grants.push(Grant {
                grantee: Some(Grantee {
                    type_: Type::from_static(Type::GROUP),
                    uri: Some("http://acs.amazonaws.com/groups/global/AllUsers".into()),
                    id: None,
                    display_name: None,
                    email_address: None,
                }),
                permission: Some(Permission::from_static(Permission::READ)),
            });
        }
        Ok(S3Response::new(GetBucketAclOutput { grants: Some(grants), owner: Some(owner) }))
    }

    async fn put_bucket_cors(&self, req: S3Request<PutBucketCorsInput>) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let bucket = &req.input.bucket;
        let rules: Vec<CorsRule> = req
            .input
            .cors_configuration
            .cors_rules
            .into_iter()
            .map(|r| CorsRule {
                allowed_origins: r.allowed_origins,
                allowed_methods: r.allowed_methods,
                allowed_headers: r.allowed_headers.unwrap_or_default(),
                expose_headers: r.expose_headers.unwrap_or_default(),
                max_age_seconds: r.max_age_seconds,
            })
            .collect();
        if rules.is_empty() || rules.len() > 100 {
            return Err(s3_error!(MalformedXML, "a CORS configuration has 1 to 100 rules"));
        }
        for r in &rules {
            if r.allowed_origins.is_empty() || r.allowed_methods.is_empty() {
                return Err(s3_error!(MalformedXML, "each CORS rule names its origins and methods"));
            }
            let known = ["GET", "PUT", "POST", "DELETE", "HEAD"];
            if let Some(m) = r.allowed_methods.iter().find(|m| !known.contains(&m.as_str())) {
                return Err(s3_error!(InvalidRequest, "Found unsupported HTTP method in CORS config. Unsupported method is {m}"));
            }
            if r.allowed_origins.iter().chain(&r.allowed_headers).any(|o| o.matches('*').count() > 1) {
                return Err(s3_error!(InvalidRequest, "a CORS origin or header may hold at most one wildcard"));
            }
        }
        self.buckets.update(bucket, |r| r.cors = rules.clone()).await.map_err(|e| bucket_error(e, bucket))?;
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    async fn get_bucket_cors(&self, req: S3Request<GetBucketCorsInput>) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let record = self.bucket(&req.input.bucket).await?;
        if record.cors.is_empty() {
            return Err(s3_error!(NoSuchCORSConfiguration, "The CORS configuration does not exist"));
        }
        let rules = record
            .cors
            .into_iter()
            .map(|r| CORSRule {
                allowed_origins: r.allowed_origins,
                allowed_methods: r.allowed_methods,
                allowed_headers: (!r.allowed_headers.is_empty()).then_some(r.allowed_headers),
                expose_headers: (!r.expose_headers.is_empty()).then_some(r.expose_headers),
                max_age_seconds: r.max_age_seconds,
                id: None,
            })
            .collect();
        Ok(S3Response::new(GetBucketCorsOutput { cors_rules: Some(rules) }))
    }

    async fn delete_bucket_cors(&self, req: S3Request<DeleteBucketCorsInput>) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let bucket = &req.input.bucket;
        self.buckets.update(bucket, |r| r.cors.clear()).await.map_err(|e| bucket_error(e, bucket))?;
        Ok(S3Response::new(DeleteBucketCorsOutput::default()))
    }

    /// Makes the bucket a website served by `--site-listen` (as `outlast site publish` does):
    /// its index and error documents. Host names set from the CLI stay; redirects are not
    /// served, so a configuration asking for them is refused rather than half kept.
    async fn put_bucket_website(&self, req: S3Request<PutBucketWebsiteInput>) -> S3Result<S3Response<PutBucketWebsiteOutput>> {
        let bucket = &req.input.bucket;
        let config = req.input.website_configuration;
        if config.redirect_all_requests_to.is_some() || config.routing_rules.is_some() {
            return Err(s3_error!(NotImplemented, "website redirects and routing rules are not served"));
        }
        let Some(index) = config.index_document.map(|d| d.suffix) else {
            return Err(s3_error!(InvalidArgument, "A value for IndexDocument Suffix must be provided"));
        };
        if index.is_empty() || index.contains('/') {
            return Err(s3_error!(InvalidArgument, "The IndexDocument Suffix is not well formed"));
        }
        let error = config.error_document.map(|d| d.key);
        if error.as_deref().is_some_and(|k| k.is_empty() || k.len() > 1024) {
            return Err(s3_error!(InvalidArgument, "The ErrorDocument Key is not well formed"));
        }
        self.buckets
            .update(bucket, |r| {
                let hosts = r.website.take().map(|w| w.hosts).unwrap_or_default();
                r.website = Some(Website { index: index.clone(), error: error.clone(), hosts });
            })
            .await
            .map_err(|e| bucket_error(e, bucket))?;
        Ok(S3Response::new(PutBucketWebsiteOutput::default()))
    }

    async fn get_bucket_website(&self, req: S3Request<GetBucketWebsiteInput>) -> S3Result<S3Response<GetBucketWebsiteOutput>> {
        let Some(website) = self.bucket(&req.input.bucket).await?.website else {
            return Err(s3_error!(NoSuchWebsiteConfiguration, "The specified bucket does not have a website configuration"));
        };
        Ok(S3Response::new(GetBucketWebsiteOutput {
            index_document: Some(IndexDocument { suffix: website.index }),
            error_document: website.error.map(|key| ErrorDocument { key }),
            ..Default::default()
        }))
    }

    /// Stops serving the bucket as a website; its objects stay.
    async fn delete_bucket_website(
        &self,
        req: S3Request<DeleteBucketWebsiteInput>,
    ) -> S3Result<S3Response<DeleteBucketWebsiteOutput>> {
        let bucket = &req.input.bucket;
        self.buckets.update(bucket, |r| r.website = None).await.map_err(|e| bucket_error(e, bucket))?;
        Ok(S3Response::new(DeleteBucketWebsiteOutput::default()))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(&self, req: S3Request<GetBucketLocationInput>) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.bucket(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = &req.input.bucket;
        self.buckets.delete(bucket).await.map_err(|e| bucket_error(e, bucket))?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let headers = req.headers.clone();
        let trailers = req.trailing_headers;
        let input = req.input;
        let name = self.object_name(&input.bucket, &input.key).await?;
        let precondition =
            self.write_precondition(&name, &input.key, input.if_match.as_ref(), input.if_none_match.as_ref()).await?;
        let sums = declared_sums!(input);
        let declared = declared_of(input.content_md5, sums, &headers, trailers, input.content_length);
        let body = input.body.unwrap_or_else(empty_body);
        let opts =
            PutOptions { content_type: input.content_type, metadata: sorted(input.metadata), precondition, ..Default::default() };
        let report = self.put_body(&name, &input.key, body, declared, opts).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(report.etag)),
            size: Some(report.size as i64),
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let i = &req.input;
        let conditions =
            (i.if_match.as_ref(), i.if_unmodified_since.as_ref(), i.if_none_match.as_ref(), i.if_modified_since.as_ref());
        let (entry, info) = self.to_read(&i.bucket, &i.key, conditions).await?;
        let (range, content_range, length) = match &i.range {
            None => (None, None, entry.size),
            Some(r) => {
                let r = r.check(entry.size)?;
                let shown = format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), entry.size);
                let len = r.end - r.start;
                (Some(ByteRange::Span(r)), Some(shown), len)
            }
        };
        let body = read_version(self.store.clone(), entry.clone(), range).await?;
        Ok(S3Response::new(GetObjectOutput {
            body: Some(body),
            content_length: Some(length as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            content_type: info.content_type.clone(),
            e_tag: Some(ETag::Strong(entry.etag.clone())),
            last_modified: Some(last_modified(entry.stamp.time_ns)),
            metadata: metadata_of(&info),
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = &req.input;
        let conditions =
            (i.if_match.as_ref(), i.if_unmodified_since.as_ref(), i.if_none_match.as_ref(), i.if_modified_since.as_ref());
        let (entry, info) = self.to_read(&i.bucket, &i.key, conditions).await?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(entry.size as i64),
            accept_ranges: Some("bytes".into()),
            content_type: info.content_type.clone(),
            e_tag: Some(ETag::Strong(entry.etag.clone())),
            last_modified: Some(last_modified(entry.stamp.time_ns)),
            metadata: metadata_of(&info),
            ..Default::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let name = self.object_name(&req.input.bucket, &req.input.key).await?;
        match self.store.remove(&name).await {
            // Deleting what is not there succeeds, as in S3.
            Ok(()) | Err(EngineError::NotFound(_)) => Ok(S3Response::new(DeleteObjectOutput::default())),
            Err(e) => Err(s3_error(e, &req.input.key)),
        }
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        let quiet = req.input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for o in &req.input.delete.objects {
            let key = &o.key;
            let outcome = match self.object_name(bucket, key).await {
                Ok(name) => match self.store.remove(&name).await {
                    Ok(()) | Err(EngineError::NotFound(_)) => Ok(()),
                    Err(e) => Err(s3_error(e, key)),
                },
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) if quiet => {}
                Ok(()) => deleted.push(DeletedObject { key: Some(key.clone()), ..Default::default() }),
                Err(e) => errors.push(Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(key.clone()),
                    message: e.message().map(str::to_string),
                    ..Default::default()
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput { deleted: Some(deleted), errors: Some(errors), ..Default::default() }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let i = &req.input;
        let conditions = copy_conditions!(i);
        let (src, src_key) = self.copy_source(req.credentials.as_ref(), &i.copy_source, conditions).await?;
        let src_key = src_key.as_str();
        let name = self.object_name(&i.bucket, &i.key).await?;
        let info = self.store.describe(&src).map_err(|e| s3_error(e, src_key))?;
        let replace = i.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let (content_type, metadata) = if replace {
            (i.content_type.clone(), sorted(i.metadata.clone()))
        } else {
            (info.content_type.clone(), info.metadata.clone())
        };
        let body = read_version(self.store.clone(), src.clone(), None).await?;
        let declared =
            Declared { md5: None, sums: Checksum::default(), trailer_names: Vec::new(), trailers: None, length: Some(src.size) };
        let opts = PutOptions { content_type, metadata, ..Default::default() };
        let report = self.put_body(&name, &i.key, body, declared, opts).await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(report.etag)),
                last_modified: Some(last_modified(now_ns())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let i = req.input;
        self.bucket(&i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let max = page_max(i.max_keys);
        let after = match (&i.continuation_token, &i.start_after) {
            (Some(t), _) => Some(after_of_token(t)?),
            (None, Some(s)) => Some(format!("{}/{s}", i.bucket)),
            (None, None) => None,
        };
        let listed = self.list(&i.bucket, &prefix, i.delimiter.as_deref(), after, max).await?;
        let count = (listed.objects.len() + listed.prefixes.len()) as i32;
        let enc = Encoding::of(i.encoding_type.as_ref());
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: Some(enc.apply(prefix)),
            delimiter: i.delimiter.map(|d| enc.apply(d)),
            max_keys: Some(max as i32),
            key_count: Some(count),
            continuation_token: i.continuation_token,
            start_after: i.start_after.map(|a| enc.apply(a)),
            is_truncated: Some(listed.next.is_some()),
            next_continuation_token: listed.next.as_deref().map(token_of),
            contents: Some(enc.objects(listed.objects)),
            common_prefixes: Some(enc.prefixes(listed.prefixes)),
            encoding_type: i.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let i = req.input;
        self.bucket(&i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let max = page_max(i.max_keys);
        let after = i.marker.as_ref().map(|m| format!("{}/{m}", i.bucket));
        let listed = self.list(&i.bucket, &prefix, i.delimiter.as_deref(), after, max).await?;
        let base = i.bucket.len() + 1;
        // Version 1 names the last key (or prefix) returned as the next marker.
        let next_marker = listed.next.as_ref().map(|n| n[base..].trim_end_matches(char::MAX).to_string());
        let enc = Encoding::of(i.encoding_type.as_ref());
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(i.bucket),
            prefix: Some(enc.apply(prefix)),
            delimiter: i.delimiter.map(|d| enc.apply(d)),
            marker: i.marker.map(|m| enc.apply(m)),
            max_keys: Some(max as i32),
            is_truncated: Some(listed.next.is_some()),
            next_marker: next_marker.map(|m| enc.apply(m)),
            contents: Some(enc.objects(listed.objects)),
            common_prefixes: Some(enc.prefixes(listed.prefixes)),
            encoding_type: i.encoding_type,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let i = req.input;
        self.object_name(&i.bucket, &i.key).await?;
        let metadata = sorted(i.metadata);
        // Checked now, so that a complete does not fail late on what was given here.
        let check = PutOptions { content_type: i.content_type.clone(), metadata: metadata.clone(), ..Default::default() };
        outlast_engine::metadata::check(&check).map_err(|e| s3_error(e, &i.key))?;
        let record = UploadRecord {
            bucket: i.bucket.clone(),
            key: i.key.clone(),
            content_type: i.content_type,
            metadata,
            created_ns: now_ns(),
            completing_ns: None,
        };
        let id = self.uploads.create(record).await.map_err(|e| s3_error(e, &i.key))?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(upload_id(&id)),
            ..Default::default()
        }))
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let headers = req.headers.clone();
        let trailers = req.trailing_headers;
        let i = req.input;
        self.object_name(&i.bucket, &i.key).await?;
        check_part_number(i.part_number)?;
        let upload = self.uploads.open(&i.bucket, &i.key, &i.upload_id).await.map_err(|e| upload_error(e, &i.key))?;
        let sums = declared_sums!(i);
        let declared = declared_of(i.content_md5, sums, &headers, trailers, i.content_length);
        let body = i.body.unwrap_or_else(empty_body);
        let name = Uploads::attempt_name(&upload, i.part_number);
        let report = self.put_body(&name, &i.key, body, declared, PutOptions::default()).await?;
        Ok(S3Response::new(UploadPartOutput { e_tag: Some(ETag::Strong(report.etag)), ..Default::default() }))
    }

    async fn upload_part_copy(&self, req: S3Request<UploadPartCopyInput>) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let i = &req.input;
        let conditions = copy_conditions!(i);
        let (src, src_key) = self.copy_source(req.credentials.as_ref(), &i.copy_source, conditions).await?;
        self.object_name(&i.bucket, &i.key).await?;
        check_part_number(i.part_number)?;
        let upload = self.uploads.open(&i.bucket, &i.key, &i.upload_id).await.map_err(|e| upload_error(e, &i.key))?;
        let range = match &i.copy_source_range {
            Some(r) => Some(copy_range(r, src.size)?),
            None => None,
        };
        let length = range.as_ref().map_or(src.size, |r| r.end - r.start);
        let body = read_version(self.store.clone(), src, range.map(ByteRange::Span)).await?;
        let declared =
            Declared { md5: None, sums: Checksum::default(), trailer_names: Vec::new(), trailers: None, length: Some(length) };
        let name = Uploads::attempt_name(&upload, i.part_number);
        let report = self.put_body(&name, &src_key, body, declared, PutOptions::default()).await?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(report.etag)),
                last_modified: Some(last_modified(now_ns())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let i = req.input;
        let name = self.object_name(&i.bucket, &i.key).await?;
        let upload = self.uploads.open(&i.bucket, &i.key, &i.upload_id).await.map_err(|e| upload_error(e, &i.key))?;
        let precondition = self.write_precondition(&name, &i.key, i.if_match.as_ref(), i.if_none_match.as_ref()).await?;
        let mut listed = Vec::new();
        for p in i.multipart_upload.and_then(|m| m.parts).unwrap_or_default() {
            let (Some(number), Some(etag)) = (p.part_number, p.e_tag) else {
                return Err(s3_error!(MalformedXML, "each part needs its PartNumber and ETag"));
            };
            listed.push((number, etag.value().to_string()));
        }
        let done = self.uploads.complete(upload, &listed, precondition).await.map_err(|e| upload_error(e, &i.key))?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(i.bucket.clone()),
            key: Some(i.key.clone()),
            location: Some(format!("/{}/{}", i.bucket, i.key)),
            e_tag: Some(ETag::Strong(done.etag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let i = req.input;
        self.object_name(&i.bucket, &i.key).await?;
        let upload = self.uploads.open(&i.bucket, &i.key, &i.upload_id).await.map_err(|e| upload_error(e, &i.key))?;
        self.uploads.abort(upload).await.map_err(|e| upload_error(e, &i.key))?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let i = req.input;
        self.object_name(&i.bucket, &i.key).await?;
        let upload = self.uploads.open(&i.bucket, &i.key, &i.upload_id).await.map_err(|e| upload_error(e, &i.key))?;
        let max = page_max(i.max_parts);
        let marker = i.part_number_marker.unwrap_or(0);
        let attempts = self.uploads.attempts(&upload.id).await.map_err(|e| s3_error(e, &i.key))?;
        let mut parts: Vec<Part> = attempts
            .into_iter()
            .filter(|(n, _)| *n > marker)
            .filter_map(|(n, a)| a.into_iter().last().map(|info| (n, info)))
            .map(|(n, info)| Part {
                part_number: Some(n),
                e_tag: Some(ETag::Strong(info.etag)),
                size: Some(info.size as i64),
                last_modified: Some(last_modified(info.modified_ns)),
                ..Default::default()
            })
            .collect();
        let truncated = cut(&mut parts, max);
        let next = parts.last().and_then(|p| p.part_number).filter(|_| truncated);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(i.upload_id),
            part_number_marker: Some(marker),
            next_part_number_marker: next,
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let i = req.input;
        self.bucket(&i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let max = page_max(i.max_uploads);
        let uploads = self.uploads.list(&i.bucket, &prefix).await.map_err(|e| s3_error(e, &i.bucket))?;
        // After the markers: keys past the key marker, or past the upload id marker on it.
        let after = |u: &&crate::uploads::Upload| match (&i.key_marker, &i.upload_id_marker) {
            (None, _) => true,
            (Some(k), None) => u.record.key > *k,
            (Some(k), Some(id)) => u.record.key > *k || (u.record.key == *k && upload_id(&u.id) > *id),
        };
        let mut shown: Vec<&crate::uploads::Upload> = uploads.iter().filter(after).collect();
        let truncated = cut(&mut shown, max);
        let (next_key, next_id) = match shown.last().filter(|_| truncated) {
            Some(u) => (Some(u.record.key.clone()), Some(upload_id(&u.id))),
            None => (None, None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(i.bucket.clone()),
            prefix: Some(prefix),
            key_marker: i.key_marker,
            upload_id_marker: i.upload_id_marker,
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            uploads: Some(
                shown
                    .into_iter()
                    .map(|u| MultipartUpload {
                        key: Some(u.record.key.clone()),
                        upload_id: Some(upload_id(&u.id)),
                        initiated: Some(last_modified(u.record.created_ns)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }
}

/// S3's range of part numbers.
fn check_part_number(n: i32) -> S3Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        Ok(())
    } else {
        Err(s3_error!(InvalidArgument, "Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive"))
    }
}

/// The source bytes of an upload part copy: `bytes=FIRST-LAST`, inside the source.
fn copy_range(r: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let bad = || {
        s3_error!(InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy")
    };
    let (first, last) = r.strip_prefix("bytes=").and_then(|r| r.split_once('-')).ok_or_else(bad)?;
    let (first, last): (u64, u64) = (first.parse().map_err(|_| bad())?, last.parse().map_err(|_| bad())?);
    if first > last {
        return Err(bad());
    }
    if last >= size {
        return Err(s3_error!(InvalidRange, "The requested range is not satisfiable"));
    }
    Ok(first..last + 1)
}

/// The S3 answer to a bucket change that could not be made.
fn bucket_error(e: BucketError, bucket: &str) -> S3Error {
    match e {
        BucketError::InvalidName(_) => s3_error!(InvalidBucketName, "The specified bucket is not valid: {bucket}"),
        BucketError::Exists(_) => s3_error!(
            BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it"
        ),
        BucketError::NoSuchBucket(_) => s3_error!(NoSuchBucket, "The specified bucket does not exist: {bucket}"),
        BucketError::NotEmpty(_) => s3_error!(BucketNotEmpty, "The bucket you tried to delete is not empty"),
        BucketError::Engine(e) => s3_error(e, bucket),
    }
}

/// The S3 answer to a step of an upload that could not be taken.
fn upload_error(e: UploadError, key: &str) -> S3Error {
    match e {
        UploadError::NoSuchUpload => s3_error!(
            NoSuchUpload,
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
        ),
        UploadError::PartOrder => s3_error!(InvalidPartOrder, "The list of parts was not in ascending order."),
        UploadError::Part(n) => s3_error!(
            InvalidPart,
            "One or more of the specified parts could not be found (part {n}): it may not have been uploaded, or its ETag did not match."
        ),
        UploadError::TooSmall(n) => {
            s3_error!(EntityTooSmall, "Your proposed upload is smaller than the minimum allowed object size (part {n}).")
        }
        UploadError::NoParts => s3_error!(MalformedXML, "The XML you provided did not list any part."),
        UploadError::Engine(e) => s3_error(e, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A continuation token brings back exactly the name it was made from, and any other
        /// text is refused with an S3 error, never a panic.
        #[test]
        fn continuation_tokens_round_trip_and_junk_is_refused(name in "\\PC{0,80}", junk in "\\PC{0,40}") {
            prop_assert_eq!(after_of_token(&token_of(&name)).unwrap(), name);
            let _ = after_of_token(&junk);
        }

        /// A part copy's source range is inside the source, or an S3 error.
        #[test]
        fn copy_source_ranges_are_inside_the_source(spec in "(bytes=)?[0-9-]{0,14}", size in 0u64..10_000) {
            if let Ok(r) = copy_range(&spec, size) {
                prop_assert!(r.start < r.end && r.end <= size, "{} of {}: {:?}", spec, size, r);
            }
        }

        /// URL encoding as the aws CLI decodes it (percent-escapes): it gives back the key.
        #[test]
        fn url_encoded_keys_decode_to_themselves(key in "\\PC{0,60}") {
            let encoded = Encoding { url: true }.apply(key.clone());
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~/%".contains(&b)));
            let back = percent_decode(&encoded);
            prop_assert_eq!(back, key);
        }
    }

    /// Percent-decoding, as a client does.
    fn percent_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
}
