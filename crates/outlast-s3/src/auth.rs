//! Who may do what: s3s checks every signature (SigV4 headers, presigned URLs, signed chunks)
//! against the secret of the access key named in the request; this module finds that secret
//! among the store's key records and decides, per operation and bucket, whether the key (or an
//! anonymous reader of a public bucket) may go on.

use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{s3_error, S3Result};

use crate::error::s3_error;
use crate::records::{Access, Records};

/// Secrets from the store's access key records.
pub(crate) struct KeyAuth(pub(crate) Arc<Records>);

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.key(access_key).await {
            Ok(Some(k)) => Ok(SecretKey::from(k.secret_access_key)),
            Ok(None) => Err(s3_error!(InvalidAccessKeyId, "The access key id you provided does not exist in our records")),
            Err(e) => Err(s3_error(e, access_key)),
        }
    }
}

/// Grants, checked once the signature is (or for an anonymous request, instead of it).
pub(crate) struct Grants(pub(crate) Arc<Records>);

/// What an operation asks of a bucket.
fn needed(op: &str) -> Access {
    match op {
        "GetObject"
        | "HeadObject"
        | "ListObjects"
        | "ListObjectsV2"
        | "HeadBucket"
        | "GetBucketLocation"
        | "ListBuckets"
        | "ListParts"
        | "ListMultipartUploads"
        | "GetBucketCors"
        | "GetBucketWebsite" => Access::Read,
        "PutObject"
        | "DeleteObject"
        | "DeleteObjects"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload"
        | "AbortMultipartUpload" => Access::Write,
        _ => Access::Admin,
    }
}

#[async_trait::async_trait]
impl S3Access for Grants {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let bucket = match cx.s3_path() {
            S3Path::Root => None,
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(bucket.to_string()),
        };
        let need = needed(cx.s3_op().name());
        match (cx.credentials(), bucket) {
            (Some(c), bucket) => {
                let key = self.0.key(&c.access_key).await.map_err(|e| s3_error(e, &c.access_key))?;
                let Some(key) = key else {
                    return Err(s3_error!(InvalidAccessKeyId, "The access key id you provided does not exist in our records"));
                };
                // The bucket list shows each key the buckets it may read (filtered there).
                let allowed = match &bucket {
                    Some(b) => key.allows(b, need),
                    None => need == Access::Read,
                };
                if allowed {
                    Ok(())
                } else {
                    Err(s3_error!(AccessDenied, "this access key may not {} here", cx.s3_op().name()))
                }
            }
            // Anonymous: reading a public bucket only.
            (None, Some(b)) if need == Access::Read => {
                let public = self.0.bucket(&b).await.map_err(|e| s3_error(e, &b))?.is_some_and(|r| r.public);
                if public {
                    Ok(())
                } else {
                    Err(s3_error!(AccessDenied, "Access Denied"))
                }
            }
            (None, _) => Err(s3_error!(AccessDenied, "Access Denied")),
        }
    }
}
