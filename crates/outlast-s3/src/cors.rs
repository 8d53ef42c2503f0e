//! CORS around the S3 service: a browser's preflight (`OPTIONS`, which s3s does not route) is
//! answered from the bucket's rules, and an answer to a request with an `Origin` header is
//! given the `Access-Control-*` headers of the first rule that allows it, as S3 does.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use crate::buckets::CorsRule;
use crate::records::Records;

/// The bucket a path-style request is about (the first segment), if any.
pub(crate) fn bucket_of(path: &str) -> Option<&str> {
    let b = path.trim_start_matches('/').split('/').next()?;
    (!b.is_empty()).then_some(b)
}

/// The first of `bucket`'s rules that lets `origin` make a `method` request sending
/// `headers`; none when the bucket has none or does not read.
async fn rule_for(records: &Records, bucket: &str, origin: &str, method: &str, headers: &[&str]) -> Option<CorsRule> {
    let record = records.bucket(bucket).await.ok().flatten()?;
    record.cors.into_iter().find(|r| r.allows(origin, method, headers))
}

fn error(status: StatusCode, code: &str, message: &str) -> s3s::HttpResponse {
    let body =
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>");
    let mut r = http::Response::new(s3s::Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    r
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Answers a preflight for `path` with `headers`.
pub(crate) async fn preflight(records: &Records, path: &str, headers: &HeaderMap) -> s3s::HttpResponse {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let (Some(origin), Some(method)) = (text(header::ORIGIN), text(header::ACCESS_CONTROL_REQUEST_METHOD)) else {
        return error(StatusCode::BAD_REQUEST, "BadRequest", "Insufficient information. Origin request header needed.");
    };
    let asked: Vec<&str> = text(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .map(|h| h.split(',').map(str::trim).filter(|h| !h.is_empty()).collect())
        .unwrap_or_default();
    let rule = match bucket_of(path) {
        Some(bucket) => rule_for(records, bucket, origin, method, &asked).await,
        None => None,
    };
    let Some(rule) = rule else {
        return error(StatusCode::FORBIDDEN, "AccessForbidden", "CORSResponse: This CORS request is not allowed.");
    };
    let mut r = http::Response::new(s3s::Body::empty());
    let h = r.headers_mut();
    set(h, header::ACCESS_CONTROL_ALLOW_ORIGIN, &rule.allow_origin(origin));
    set(h, header::ACCESS_CONTROL_ALLOW_METHODS, &rule.allowed_methods.join(", "));
    if !asked.is_empty() {
        set(h, header::ACCESS_CONTROL_ALLOW_HEADERS, &asked.join(", "));
    }
    if let Some(age) = rule.max_age_seconds {
        set(h, header::ACCESS_CONTROL_MAX_AGE, &age.to_string());
    }
    if !rule.expose_headers.is_empty() {
        set(h, header::ACCESS_CONTROL_EXPOSE_HEADERS, &rule.expose_headers.join(", "));
    }
    h.insert(header::VARY, HeaderValue::from_static("Origin, Access-Control-Request-Headers, Access-Control-Request-Method"));
    r
}

/// Adds the `Access-Control-*` headers to `response` when `origin` may make `method`
/// requests of the bucket of `path`.
pub(crate) async fn decorate(records: &Records, path: &str, method: &Method, origin: &str, response: &mut s3s::HttpResponse) {
    let Some(bucket) = bucket_of(path) else { return };
    let Some(rule) = rule_for(records, bucket, origin, method.as_str(), &[]).await else { return };
    let h = response.headers_mut();
    set(h, header::ACCESS_CONTROL_ALLOW_ORIGIN, &rule.allow_origin(origin));
    set(h, header::ACCESS_CONTROL_ALLOW_METHODS, &rule.allowed_methods.join(", "));
    if !rule.expose_headers.is_empty() {
        set(h, header::ACCESS_CONTROL_EXPOSE_HEADERS, &rule.expose_headers.join(", "));
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}
