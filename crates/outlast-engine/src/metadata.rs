//! What a put may carry besides its bytes: a content type and user metadata, held to the
//! rules S3 applies, so that the gateway never meets an object it cannot serve: keys are HTTP
//! header tokens, unique whatever their case (S3 lower-cases them), keys and values together
//! at most 2 KiB, and nothing that could end a header line early.

use crate::error::EngineError;
use crate::put::PutOptions;

/// Most bytes of user metadata (keys and values, as UTF-8), as S3 has it.
pub const MAX_METADATA_BYTES: usize = 2048;
/// Most bytes of a content type.
pub const MAX_CONTENT_TYPE_BYTES: usize = 1024;

/// Refuses a content type or user metadata a put must not store; a face that takes them
/// before the put (an S3 multipart upload's creation) checks them then.
pub fn check(opts: &PutOptions) -> Result<(), EngineError> {
    let bad = |message: String| Err(EngineError::Metadata(message));
    if let Some(ct) = &opts.content_type {
        if ct.len() > MAX_CONTENT_TYPE_BYTES {
            return bad(format!("the content type is {} bytes; at most {MAX_CONTENT_TYPE_BYTES}", ct.len()));
        }
        if let Some(c) = ct.chars().find(|c| !is_field_char(*c)) {
            return bad(format!("the content type holds {c:?}, which cannot go in an HTTP header"));
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for (key, value) in &opts.metadata {
        if key.is_empty() || !key.chars().all(is_token_char) {
            return bad(format!("key {key:?} is not an HTTP header token (letters, digits and !#$%&'*+-.^_`|~ only)"));
        }
        if !seen.insert(key.to_ascii_lowercase()) {
            return bad(format!("key {key:?} is given twice (keys are the same whatever their case)"));
        }
        if let Some(c) = value.chars().find(|c| !is_field_char(*c)) {
            return bad(format!("the value of {key:?} holds {c:?}, which cannot go in an HTTP header"));
        }
        total += key.len() + value.len();
    }
    if total > MAX_METADATA_BYTES {
        return bad(format!("keys and values come to {total} bytes; at most {MAX_METADATA_BYTES}"));
    }
    Ok(())
}

/// A `tchar` of RFC 9110: what a header name may hold.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// What a header value may hold: visible characters, spaces and tabs, and text beyond ASCII
/// (the gateway encodes it); never a line break or another control character.
fn is_field_char(c: char) -> bool {
    c == '\t' || !c.is_control()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(content_type: Option<&str>, metadata: &[(&str, &str)]) -> PutOptions {
        PutOptions {
            content_type: content_type.map(String::from),
            metadata: metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn what_s3_accepts_is_accepted() {
        check(&opts(Some("text/html; charset=utf-8"), &[("author", "Zoë Ünal"), ("x-Tag_1", "a\tb")])).unwrap();
        check(&opts(None, &[("k", &"v".repeat(MAX_METADATA_BYTES - 1))])).unwrap();
    }

    #[test]
    fn what_would_break_a_header_or_s3_is_refused() {
        for (o, says) in [
            (opts(Some("text/plain\r\nSet-Cookie: x"), &[]), "content type"),
            (opts(None, &[("a b", "v")]), "token"),
            (opts(None, &[("", "v")]), "token"),
            (opts(None, &[("ключ", "v")]), "token"),
            (opts(None, &[("Author", "a"), ("author", "b")]), "twice"),
            (opts(None, &[("k", "line\nbreak")]), "cannot go"),
            (opts(None, &[("k", "\u{1b}[31m")]), "cannot go"),
            (opts(None, &[("k", &"v".repeat(MAX_METADATA_BYTES))]), "at most"),
            (opts(Some(&"t".repeat(MAX_CONTENT_TYPE_BYTES + 1)), &[]), "at most"),
        ] {
            let err = check(&o).unwrap_err().to_string();
            assert!(err.contains(says), "{o:?}: {err}");
        }
    }
}
