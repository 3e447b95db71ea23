//! Blob service properties (Get and Set Blob Service Properties) and the CORS
//! rules among them: preflight `OPTIONS` requests, and the CORS headers of the
//! requests a rule admits.
//!
//! The properties are kept on the account, one XML element per setting (`Cors`,
//! `Logging`, `HourMetrics`, …): Set replaces the elements it sends and keeps
//! the others, as Azure does. keyless keeps the logging and metrics settings it
//! is given and reports them back; its own storage log is always on.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use quick_xml::Reader;
use quick_xml::events::Event;
use serde_json::{Map, Value};

use keyless_store::StorageAccount;

use super::Ctx;
use super::error::StorageError;
use crate::feed::Change;
use crate::state::SharedState;

/// Where the properties live in the account's body.
const KEY: &str = "blobServiceProperties";
/// The elements of `<StorageServiceProperties>`, in the order Azure writes them,
/// with what an account that never set them reports.
const DEFAULTS: [(&str, &str); 7] = [
    (
        "Logging",
        "<Logging><Version>1.0</Version><Read>false</Read><Write>false</Write><Delete>false</Delete><RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></Logging>",
    ),
    (
        "HourMetrics",
        "<HourMetrics><Version>1.0</Version><Enabled>false</Enabled><RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></HourMetrics>",
    ),
    (
        "MinuteMetrics",
        "<MinuteMetrics><Version>1.0</Version><Enabled>false</Enabled><RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></MinuteMetrics>",
    ),
    ("Cors", "<Cors />"),
    ("DefaultServiceVersion", ""),
    (
        "DeleteRetentionPolicy",
        "<DeleteRetentionPolicy><Enabled>false</Enabled></DeleteRetentionPolicy>",
    ),
    (
        "StaticWebsite",
        "<StaticWebsite><Enabled>false</Enabled></StaticWebsite>",
    ),
];
/// Azure's limit on CORS rules.
const MAX_RULES: usize = 5;
const METHODS: [&str; 8] = [
    "DELETE", "GET", "HEAD", "MERGE", "POST", "OPTIONS", "PUT", "PATCH",
];

fn invalid(why: impl std::fmt::Display) -> StorageError {
    StorageError::bad(
        "InvalidXmlDocument",
        format!("XML specified is not syntactically valid: {why}"),
    )
}

fn stored(account: &StorageAccount) -> Option<&Map<String, Value>> {
    account.body.get(KEY).and_then(Value::as_object)
}

/// One kept element of the properties, as XML text (`None` when never set).
pub(crate) fn stored_element<'a>(account: &'a StorageAccount, name: &str) -> Option<&'a str> {
    stored(account)
        .and_then(|m| m.get(name))
        .and_then(Value::as_str)
}

/// Replaces one element of the kept properties.
pub(crate) fn store_element(account: &mut StorageAccount, name: &str, xml: String) {
    let mut kept = stored(account).cloned().unwrap_or_default();
    kept.insert(name.to_owned(), Value::String(xml));
    if let Some(map) = account.body.as_object_mut() {
        map.insert(KEY.to_owned(), Value::Object(kept));
    }
}

/// Get Blob Service Properties.
pub(crate) fn get(ctx: &Ctx) -> Response {
    let kept = stored(&ctx.account);
    let mut xml =
        String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><StorageServiceProperties>");
    for (name, default) in DEFAULTS {
        let element = kept
            .and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .unwrap_or(default);
        xml.push_str(element);
    }
    xml.push_str("</StorageServiceProperties>");
    ([(header::CONTENT_TYPE, "application/xml")], xml).into_response()
}

/// The top-level elements of a `<StorageServiceProperties>` body, each as its
/// own XML text.
fn elements(body: &[u8]) -> Result<Vec<(String, String)>, StorageError> {
    let text = std::str::from_utf8(body).map_err(|_| invalid("the body is not UTF-8"))?;
    let mut reader = Reader::from_str(text);
    let mut depth = 0usize;
    let mut start = 0usize;
    let mut current = String::new();
    let mut out = Vec::new();
    let mut saw_root = false;
    loop {
        let before = usize::try_from(reader.buffer_position()).unwrap_or(0);
        let event = reader.read_event().map_err(|e| invalid(e.to_string()))?;
        let after = usize::try_from(reader.buffer_position()).unwrap_or(0);
        match event {
            Event::Start(e) => {
                if depth == 0 {
                    if e.name().as_ref() != b"StorageServiceProperties" {
                        return Err(invalid(
                            "the root element must be `StorageServiceProperties`",
                        ));
                    }
                    saw_root = true;
                } else if depth == 1 {
                    start = before;
                    current = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                }
                depth += 1;
            }
            Event::Empty(e) if depth == 1 => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                out.push((name, text.get(before..after).unwrap_or_default().to_owned()));
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    out.push((
                        std::mem::take(&mut current),
                        text.get(start..after).unwrap_or_default().to_owned(),
                    ));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err(invalid(
            "the root element must be `StorageServiceProperties`",
        ));
    }
    Ok(out)
}

/// A CORS rule of the account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rule {
    origins: Vec<String>,
    methods: Vec<String>,
    headers: Vec<String>,
    exposed: Vec<String>,
    max_age: u64,
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses and checks a `<Cors>` element.
fn parse_rules(xml: &str) -> Result<Vec<Rule>, StorageError> {
    let mut reader = Reader::from_str(xml);
    let mut rules = Vec::new();
    let mut rule: Option<Rule> = None;
    let mut field = String::new();
    loop {
        match reader.read_event().map_err(|e| invalid(e.to_string()))? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if name == "CorsRule" {
                    rule = Some(Rule::default());
                }
                field = name;
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| invalid(e.to_string()))?;
                if let Some(r) = rule.as_mut() {
                    match field.as_str() {
                        "AllowedOrigins" => r.origins = list(&text),
                        "AllowedMethods" => r.methods = list(&text),
                        "AllowedHeaders" => r.headers = list(&text),
                        "ExposedHeaders" => r.exposed = list(&text),
                        "MaxAgeInSeconds" => {
                            r.max_age = text.trim().parse().map_err(|_| {
                                StorageError::bad(
                                    "InvalidXmlNodeValue",
                                    format!("The value for one of the XML nodes is not in the correct format: MaxAgeInSeconds `{text}`"),
                                )
                            })?;
                        }
                        _ => {}
                    }
                }
            }
            Event::End(e) => {
                if e.name().as_ref() == b"CorsRule" {
                    rules.extend(rule.take());
                }
                field.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if rules.len() > MAX_RULES {
        return Err(invalid(format_args!(
            "at most {MAX_RULES} CORS rules ({} given)",
            rules.len()
        )));
    }
    for r in &rules {
        if r.origins.is_empty() || r.methods.is_empty() {
            return Err(StorageError::bad(
                "InvalidXmlNodeValue",
                "The value for one of the XML nodes is not in the correct format: a CORS rule names its allowed origins and methods",
            ));
        }
        if let Some(m) = r.methods.iter().find(|m| !METHODS.contains(&m.as_str())) {
            return Err(StorageError::bad(
                "InvalidXmlNodeValue",
                format!(
                    "The value for one of the XML nodes is not in the correct format: `{m}` is not a method CORS rules allow"
                ),
            ));
        }
    }
    Ok(rules)
}

/// Set Blob Service Properties: the elements sent replace those kept.
pub(crate) async fn set(ctx: &Ctx, body: Body) -> Result<Response, StorageError> {
    let body = axum::body::to_bytes(body, 256 * 1024)
        .await
        .map_err(|_| invalid("the body is larger than 256 KiB or could not be read"))?;
    let sent = elements(&body)?;
    for (name, xml) in &sent {
        if !DEFAULTS.iter().any(|(n, _)| n == name) {
            return Err(invalid(format_args!("unexpected element `{name}`")));
        }
        if name == "Cors" {
            parse_rules(xml)?;
        }
    }
    let mut account = (*ctx.account).clone();
    for (name, xml) in sent {
        let xml = if name == "DeleteRetentionPolicy" {
            // Kept as keyless writes it, so that Get answers in one shape.
            super::protection::retention_xml(super::protection::parse_retention(&xml)?)
        } else {
            xml
        };
        store_element(&mut account, &name, xml);
    }
    ctx.state.store.account_update(&account).await?;
    ctx.state
        .changed(Change::Account(account.name.clone()))
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The account's CORS rules (none when it has none or they cannot be read).
fn rules_of(account: &StorageAccount) -> Vec<Rule> {
    stored(account)
        .and_then(|m| m.get("Cors"))
        .and_then(Value::as_str)
        .and_then(|xml| parse_rules(xml).ok())
        .unwrap_or_default()
}

/// Whether `origin` is one of the rule's: `*` admits any; a `*` inside an
/// origin (`https://*.contoso.com`) stands for one or more subdomain labels;
/// origins compare without regard to case.
fn origin_matches(rule: &Rule, origin: &str) -> bool {
    let origin = origin.to_ascii_lowercase();
    rule.origins.iter().any(|o| {
        let o = o.to_ascii_lowercase();
        match o.split_once('*') {
            _ if o == "*" => true,
            Some((prefix, suffix)) => {
                origin.len() > prefix.len() + suffix.len()
                    && origin.starts_with(prefix)
                    && origin.ends_with(suffix)
            }
            None => o == origin,
        }
    })
}

fn header_matches(rule: &Rule, name: &str) -> bool {
    rule.headers.iter().any(|h| {
        h == "*"
            || h.eq_ignore_ascii_case(name)
            || h.strip_suffix('*').is_some_and(|prefix| {
                name.get(..prefix.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
            })
    })
}

fn preflight_refused() -> StorageError {
    StorageError::new(
        StatusCode::FORBIDDEN,
        "CorsPreflightFailure",
        "CORS not enabled or no matching rule found for this request.",
    )
}

/// A preflight `OPTIONS` request: answered by the first rule admitting its
/// origin, method and headers, refused otherwise. It carries no credentials and
/// reaches no data.
pub(crate) async fn preflight(state: &SharedState, headers: &HeaderMap, path: &str) -> Response {
    let account_name = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let account = match state.account(account_name).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return StorageError::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                format!("The storage account `{account_name}` does not exist on this server."),
            )
            .into_response();
        }
        Err(e) => return StorageError::from(e).into_response(),
    };
    let Some(origin) = h("origin") else {
        return preflight_refused().into_response();
    };
    let Some(method) = h("access-control-request-method") else {
        return StorageError::bad(
            "MissingRequiredHeader",
            "A required CORS header is not present. A preflight names its Access-Control-Request-Method.",
        )
        .into_response();
    };
    let asked: Vec<String> = h("access-control-request-headers")
        .map(list)
        .unwrap_or_default();
    let rules = rules_of(&account);
    let Some(rule) = rules.iter().find(|r| {
        origin_matches(r, origin)
            && r.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
            && asked.iter().all(|a| header_matches(r, a))
    }) else {
        return preflight_refused().into_response();
    };
    let mut out = HeaderMap::new();
    let any = rule.origins.iter().any(|o| o == "*");
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            out.insert(name, v);
        }
    };
    put(
        "access-control-allow-origin",
        if any { "*" } else { origin },
    );
    put("access-control-allow-methods", method);
    if !asked.is_empty() {
        put("access-control-allow-headers", &asked.join(","));
    }
    put("access-control-max-age", &rule.max_age.to_string());
    if !any {
        put("access-control-allow-credentials", "true");
    }
    (StatusCode::OK, out).into_response()
}

/// The CORS headers of a request from `origin` (a browser's), added to its
/// response: those of the first rule admitting the origin and method, or only
/// `Vary: Origin` when the account has rules but none admits it.
pub(crate) fn apply(account: &StorageAccount, origin: &str, method: &str, response: &mut Response) {
    let rules = rules_of(account);
    if rules.is_empty() {
        return;
    }
    let headers = response.headers_mut();
    let Some(rule) = rules.iter().find(|r| {
        origin_matches(r, origin) && r.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }) else {
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        return;
    };
    let any = rule.origins.iter().any(|o| o == "*");
    if any {
        headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    } else {
        if let Ok(v) = HeaderValue::from_str(origin) {
            headers.insert("access-control-allow-origin", v);
        }
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        headers.insert(
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        );
    }
    let exposed = if rule.exposed.iter().any(|e| e == "*") {
        // Every header of this response, named.
        headers
            .keys()
            .map(axum::http::HeaderName::as_str)
            .collect::<Vec<_>>()
            .join(",")
    } else {
        rule.exposed.join(",")
    };
    if let Ok(v) = HeaderValue::from_str(&exposed) {
        headers.insert("access-control-expose-headers", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_split_into_elements_and_rules_parse() {
        let body = br#"<?xml version="1.0" encoding="utf-8"?><StorageServiceProperties><Cors><CorsRule><AllowedOrigins>https://a.example,https://b.example</AllowedOrigins><AllowedMethods>GET,PUT</AllowedMethods><MaxAgeInSeconds>60</MaxAgeInSeconds><ExposedHeaders>x-ms-*</ExposedHeaders><AllowedHeaders>x-ms-meta-*</AllowedHeaders></CorsRule></Cors><DefaultServiceVersion>2025-01-05</DefaultServiceVersion><Logging /></StorageServiceProperties>"#;
        let parts = elements(body).unwrap();
        let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Cors", "DefaultServiceVersion", "Logging"]);
        assert!(parts[1].1 == "<DefaultServiceVersion>2025-01-05</DefaultServiceVersion>");
        let rules = parse_rules(&parts[0].1).unwrap();
        assert_eq!(rules.len(), 1);
        let r = &rules[0];
        assert!(
            origin_matches(r, "https://a.example") && !origin_matches(r, "https://evil.example")
        );
        let wild = Rule {
            origins: vec!["*.contoso.com".into()],
            ..Rule::default()
        };
        for (origin, admitted) in [
            ("foo.contoso.com", true),
            ("foo.bar.baz.contoso.com", true),
            ("foo.CONTOSO.com", true),
            ("contoso.com", false),
            ("bar.notcontoso.com", false),
        ] {
            assert_eq!(origin_matches(&wild, origin), admitted, "{origin}");
        }
        assert!(header_matches(r, "x-ms-meta-team") && !header_matches(r, "authorization"));
        assert_eq!(r.max_age, 60);
        assert!(elements(b"<Other/>").is_err());
        let bad_method = "<Cors><CorsRule><AllowedOrigins>*</AllowedOrigins><AllowedMethods>TRACE</AllowedMethods></CorsRule></Cors>";
        assert!(parse_rules(bad_method).is_err());
        let six = "<CorsRule><AllowedOrigins>*</AllowedOrigins><AllowedMethods>GET</AllowedMethods></CorsRule>".repeat(6);
        assert!(parse_rules(&format!("<Cors>{six}</Cors>")).is_err());
    }
}
