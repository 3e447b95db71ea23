//! Azure Storage SharedKey: the string to sign and the signature.
//!
//! The canonicalized resource is `/` + account + the request path exactly as
//! sent (percent-encoded), then one `\n<name>:<values>` line per query parameter
//! (names lowercase and sorted, values decoded and comma-joined). With path-style
//! URLs the account therefore appears twice (`/acct/acct/container/blob`).

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The headers that take part, by name (lowercase).
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// The account.
    pub account: &'a str,
    /// The raw request path, percent-encoded as sent.
    pub path: &'a str,
    /// Query parameters, decoded.
    pub query: &'a [(String, String)],
    /// Every header, names lowercase.
    pub headers: &'a [(String, String)],
}

const STANDARD_HEADERS: [&str; 11] = [
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
];

/// A header's trimmed value, empty when the request lacks it.
fn header_value<'a>(req: &SignedRequest<'a>, name: &str) -> &'a str {
    req.headers
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.trim())
}

/// The SharedKey string to sign of a request (service versions 2009-09-19 and later).
pub fn string_to_sign(req: &SignedRequest<'_>) -> String {
    let header = |name: &str| header_value(req, name);
    let mut out = String::with_capacity(256);
    out.push_str(&req.method.to_ascii_uppercase());
    for name in STANDARD_HEADERS {
        out.push('\n');
        let value = header(name);
        // Content-Length is empty when zero (version 2015-02-21 and later); Date is
        // empty when x-ms-date is sent.
        match name {
            "content-length" if value == "0" => {}
            "date" if !header("x-ms-date").is_empty() => {}
            _ => out.push_str(value),
        }
    }
    out.push('\n');
    push_ms_headers(&mut out, req.headers);
    out.push('/');
    out.push_str(req.account);
    out.push_str(req.path);
    let mut names: Vec<String> = req
        .query
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let mut values: Vec<&str> = req
            .query
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(&name))
            .map(|(_, v)| v.as_str())
            .collect();
        values.sort_unstable();
        out.push('\n');
        out.push_str(&name);
        out.push(':');
        out.push_str(&values.join(","));
    }
    out
}

/// The SharedKey Lite string to sign of a Blob request (versions 2009-09-19 and
/// later): method, Content-MD5, Content-Type and Date, the `x-ms-` headers, then
/// the resource with only its `comp` parameter.
pub fn string_to_sign_lite(req: &SignedRequest<'_>) -> String {
    let header = |name: &str| header_value(req, name);
    let mut out = String::with_capacity(192);
    out.push_str(&req.method.to_ascii_uppercase());
    for name in ["content-md5", "content-type", "date"] {
        out.push('\n');
        if name != "date" || header("x-ms-date").is_empty() {
            out.push_str(header(name));
        }
    }
    out.push('\n');
    push_ms_headers(&mut out, req.headers);
    out.push('/');
    out.push_str(req.account);
    out.push_str(req.path);
    if let Some((_, comp)) = req
        .query
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("comp"))
    {
        out.push_str("?comp=");
        out.push_str(comp);
    }
    out
}

/// The canonicalized `x-ms-` headers: sorted by name, one `name:value\n` each.
fn push_ms_headers(out: &mut String, headers: &[(String, String)]) {
    let mut ms: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(n, _)| n.starts_with("x-ms-"))
        .map(|(n, v)| (n.as_str(), v.trim()))
        .collect();
    ms.sort_by(|a, b| a.0.cmp(b.0));
    for (n, v) in ms {
        out.push_str(n);
        out.push(':');
        out.push_str(v);
        out.push('\n');
    }
}

/// HMAC-SHA256 of `text` with the decoded account key, base64.
pub fn sign(key: &[u8], text: &str) -> String {
    STANDARD.encode(hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        text.as_bytes(),
    ))
}

/// Whether `signature` (base64) is the HMAC of `text` under `key`, in constant time.
pub fn verify(key: &[u8], text: &str, signature: &str) -> bool {
    STANDARD.decode(signature).is_ok_and(|sig| {
        hmac::verify(
            &hmac::Key::new(hmac::HMAC_SHA256, key),
            text.as_bytes(),
            &sig,
        )
        .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn a_path_style_put_canonicalizes_like_the_python_sdk() {
        // The shape azure-storage-blob signs (reference: azure-clients §3).
        let headers = owned(&[
            ("content-length", "5"),
            ("content-type", "application/octet-stream"),
            ("x-ms-date", "Sun, 22 Nov 2026 10:00:00 GMT"),
            ("x-ms-version", "2026-10-06"),
            ("x-ms-blob-type", "BlockBlob"),
            ("if-none-match", "*"),
        ]);
        let query = owned(&[("timeout", "30"), ("comp", "block"), ("blockid", "AAA=")]);
        let req = SignedRequest {
            method: "PUT",
            account: "acct",
            path: "/acct/c1/a%20b/%C3%BC.txt",
            query: &query,
            headers: &headers,
        };
        let expected = "PUT\n\n\n5\n\napplication/octet-stream\n\n\n\n*\n\n\nx-ms-blob-type:BlockBlob\nx-ms-date:Sun, 22 Nov 2026 10:00:00 GMT\nx-ms-version:2026-10-06\n/acct/acct/c1/a%20b/%C3%BC.txt\nblockid:AAA=\ncomp:block\ntimeout:30";
        assert_eq!(string_to_sign(&req), expected);
        let sig = sign(b"secret", expected);
        assert!(verify(b"secret", expected, &sig));
        assert!(!verify(b"other", expected, &sig));
        assert!(!verify(b"secret", "x", &sig));
    }

    #[test]
    fn shared_key_lite_signs_the_short_form() {
        // The documented example: Date left empty beside x-ms-date, only `comp` kept.
        let headers = owned(&[
            ("content-type", "text/plain; charset=UTF-8"),
            ("content-length", "11"),
            ("x-ms-date", "Sun, 20 Sep 2009 20:36:40 GMT"),
            ("x-ms-meta-m2", "v2"),
            ("x-ms-meta-m1", "v1"),
        ]);
        let query = owned(&[("timeout", "30")]);
        let req = SignedRequest {
            method: "PUT",
            account: "testaccount1",
            path: "/mycontainer/hello.txt",
            query: &query,
            headers: &headers,
        };
        assert_eq!(
            string_to_sign_lite(&req),
            "PUT\n\ntext/plain; charset=UTF-8\n\nx-ms-date:Sun, 20 Sep 2009 20:36:40 GMT\nx-ms-meta-m1:v1\nx-ms-meta-m2:v2\n/testaccount1/mycontainer/hello.txt"
        );
        let query = owned(&[("restype", "container"), ("comp", "metadata")]);
        let req = SignedRequest {
            method: "get",
            query: &query,
            headers: &owned(&[("date", "Sun, 20 Sep 2009 20:36:40 GMT")]),
            ..req
        };
        assert_eq!(
            string_to_sign_lite(&req),
            "GET\n\n\nSun, 20 Sep 2009 20:36:40 GMT\n/testaccount1/mycontainer/hello.txt?comp=metadata"
        );
    }

    #[test]
    fn zero_content_length_is_empty() {
        let headers = owned(&[("content-length", "0"), ("x-ms-date", "d")]);
        let req = SignedRequest {
            method: "get",
            account: "a",
            path: "/a/c",
            query: &[],
            headers: &headers,
        };
        assert!(string_to_sign(&req).starts_with("GET\n\n\n\n"));
    }
}
