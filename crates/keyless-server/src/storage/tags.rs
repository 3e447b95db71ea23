//! Blob index tags: the tag set's rules, its XML and header forms, and the two
//! expression languages that read them — Find Blobs by Tags' `where` and the
//! `x-ms-if-tags` condition.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::Ctx;
use super::auth::Auth;
use super::error::StorageError;
use super::operation::Operation;
use super::xml::escape;
use crate::state::SharedState;

/// A blob's tags, in the order set.
pub(crate) type Tags = Vec<(String, String)>;

const MAX_TAGS: usize = 10;
const MAX_KEY: usize = 128;
const MAX_VALUE: usize = 256;

/// Characters a tag key or value may hold besides ASCII letters and digits.
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ' ' | '+' | '-' | '.' | '/' | ':' | '=' | '_')
}

fn invalid_tag(why: impl std::fmt::Display) -> StorageError {
    StorageError::bad(
        "InvalidTag",
        format!(
            "The tags specified are invalid. It contains characters that are not permitted: {why}"
        ),
    )
}

/// Checks a tag set against Azure's rules: at most 10 tags, unique keys of 1–128
/// characters, values of up to 256, letters, digits and ` +-./:=_` only.
pub(crate) fn validate(tags: &Tags) -> Result<(), StorageError> {
    if tags.len() > MAX_TAGS {
        return Err(StorageError::bad(
            "TooManyTags",
            format!(
                "The number of tags exceeds the limit of {MAX_TAGS} ({} given).",
                tags.len()
            ),
        ));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        if k.is_empty() || k.chars().count() > MAX_KEY {
            return Err(invalid_tag(format_args!(
                "a key has 1 to {MAX_KEY} characters (`{k}`)"
            )));
        }
        if v.chars().count() > MAX_VALUE {
            return Err(invalid_tag(format_args!(
                "a value has at most {MAX_VALUE} characters (key `{k}`)"
            )));
        }
        if let Some(c) = k.chars().chain(v.chars()).find(|c| !allowed(*c)) {
            return Err(invalid_tag(format_args!(
                "`{c}` in tag `{k}`; keys and values hold letters, digits and ` +-./:=_`"
            )));
        }
        if tags.iter().take(i).any(|(other, _)| other == k) {
            return Err(invalid_tag(format_args!("the key `{k}` is given twice")));
        }
    }
    Ok(())
}

/// The `x-ms-tags` header (`k1=v1&k2=v2`, URL-encoded), validated.
pub(crate) fn from_header(text: &str) -> Result<Tags, StorageError> {
    let tags: Tags = serde_urlencoded::from_str(text)
        .map_err(|_| invalid_tag("x-ms-tags is not a URL-encoded query string"))?;
    validate(&tags)?;
    Ok(tags)
}

/// The tags a write sets (`x-ms-tags`), none when it sends none.
pub(crate) fn from_request(ctx: &Ctx) -> Result<Tags, StorageError> {
    match ctx.header("x-ms-tags") {
        None => Ok(Tags::new()),
        Some(text) => {
            refuse_on_hns(ctx)?;
            from_header(text)
        }
    }
}

/// Blob index tags are not kept on hierarchical-namespace accounts, as in Azure.
pub(crate) fn refuse_on_hns(ctx: &Ctx) -> Result<(), StorageError> {
    if ctx.account.hns {
        return Err(StorageError::new(
            axum::http::StatusCode::CONFLICT,
            "FeatureNotSupportedForAccount",
            "Blob index tags are not supported on accounts with a hierarchical namespace.",
        ));
    }
    Ok(())
}

/// A write that sets tags (`x-ms-tags`) needs, besides the write, what Set Blob
/// Tags needs: the `t` letter of a SAS, the tags write data action of RBAC.
pub(crate) fn authorize_on_write(
    state: &SharedState,
    account: &keyless_store::StorageAccount,
    auth: &Auth,
    op: Operation,
    container: &str,
) -> Result<(), StorageError> {
    if !matches!(
        op,
        Operation::PutBlob | Operation::PutBlockList | Operation::CopyBlob
    ) {
        return Ok(());
    }
    match auth {
        Auth::SharedKey => Ok(()),
        Auth::Anonymous => Err(StorageError::auth("Anonymous requests do not write.")),
        Auth::Sas(sas) => sas.needs("t"),
        Auth::Bearer(identity) => super::access::authorize(
            state,
            account,
            identity,
            keyless_core::rbac::Permission::DataAction(super::access::BLOB_TAGS_WRITE),
            container,
        ),
    }
}

/// Parses and validates a Set Blob Tags body: `<Tags><TagSet><Tag><Key>…</Key><Value>…</Value></Tag>…`.
pub(crate) fn from_xml(body: &[u8]) -> Result<Tags, StorageError> {
    let invalid = |why: String| {
        StorageError::bad(
            "InvalidXmlDocument",
            format!("XML specified is not syntactically valid: {why}"),
        )
    };
    let mut reader = Reader::from_reader(body);
    let mut tags = Tags::new();
    let mut path: Vec<Vec<u8>> = Vec::new();
    let (mut key, mut value) = (None::<String>, None::<String>);
    let mut buf = Vec::new();
    loop {
        match reader
            .read_event_into(&mut buf)
            .map_err(|e| invalid(e.to_string()))?
        {
            Event::Start(e) => path.push(e.name().as_ref().to_vec()),
            Event::Empty(e) => match e.name().as_ref() {
                b"Key" => key = Some(String::new()),
                b"Value" => value = Some(String::new()),
                b"Tags" | b"TagSet" => {}
                other => {
                    return Err(invalid(format!(
                        "unexpected element `{}`",
                        String::from_utf8_lossy(other)
                    )));
                }
            },
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| invalid(e.to_string()))?;
                match path.last().map(Vec::as_slice) {
                    Some(b"Key") => key = Some(text.into_owned()),
                    Some(b"Value") => value = Some(text.into_owned()),
                    _ if text.trim().is_empty() => {}
                    _ => return Err(invalid("text outside a tag's key or value".into())),
                }
            }
            Event::End(e) => {
                let name = path.pop().unwrap_or_default();
                if name.as_slice() != e.name().as_ref() {
                    return Err(invalid("mismatched end tag".into()));
                }
                match name.as_slice() {
                    b"Tag" => match (key.take(), value.take()) {
                        (Some(k), v) => tags.push((k, v.unwrap_or_default())),
                        (None, _) => return Err(invalid("a `Tag` without a `Key`".into())),
                    },
                    b"Tags" | b"TagSet" | b"Key" | b"Value" => {}
                    other => {
                        return Err(invalid(format!(
                            "unexpected element `{}`",
                            String::from_utf8_lossy(other)
                        )));
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    validate(&tags)?;
    Ok(tags)
}

/// `<Tags><TagSet>…</TagSet></Tags>`.
pub(crate) fn to_xml(tags: &[(String, String)]) -> String {
    let mut xml = String::from("<Tags><TagSet>");
    for (k, v) in tags {
        xml.push_str(&format!(
            "<Tag><Key>{}</Key><Value>{}</Value></Tag>",
            escape(k),
            escape(v)
        ));
    }
    xml.push_str("</TagSet></Tags>");
    xml
}

/// Which language an expression is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Find Blobs by Tags: comparisons joined by `AND`, and `@container`.
    Find,
    /// `x-ms-if-tags`: also `<>`, `OR` and parentheses; no `@container`.
    Condition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A parsed tag expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    /// `key op 'value'`; the key `@container` names the blob's container.
    Compare(String, Op, String),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// Why an expression did not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) position: usize,
    pub(crate) message: String,
}

impl Expr {
    /// Parses `text` in `dialect`.
    pub(crate) fn parse(text: &str, dialect: Dialect) -> Result<Self, SyntaxError> {
        let mut p = Parser {
            text,
            at: 0,
            dialect,
        };
        let expr = p.or()?;
        p.space();
        if p.at < text.len() {
            return Err(p.error("unexpected text after the expression"));
        }
        if dialect == Dialect::Find {
            let mut keys: Vec<&str> = Vec::new();
            expr.keys(&mut keys);
            keys.retain(|k| *k != "@container");
            keys.sort_unstable();
            keys.dedup();
            if keys.len() > MAX_TAGS {
                return Err(SyntaxError {
                    position: 0,
                    message: format!("there can be at most {MAX_TAGS} unique tags in a query"),
                });
            }
        }
        Ok(expr)
    }

    fn keys<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Self::Compare(k, _, _) => out.push(k),
            Self::And(all) | Self::Or(all) => all.iter().for_each(|e| e.keys(out)),
        }
    }

    /// The keys the expression names (for Find's reply, which shows those tags).
    pub(crate) fn named_keys(&self) -> Vec<&str> {
        let mut keys = Vec::new();
        self.keys(&mut keys);
        keys
    }

    /// Whether a blob in `container` with `tags` satisfies the expression. A
    /// comparison on a tag the blob lacks is false.
    pub(crate) fn matches(&self, container: &str, tags: &[(String, String)]) -> bool {
        match self {
            Self::And(all) => all.iter().all(|e| e.matches(container, tags)),
            Self::Or(any) => any.iter().any(|e| e.matches(container, tags)),
            Self::Compare(key, op, value) => {
                let actual = if key == "@container" {
                    Some(container)
                } else {
                    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
                };
                let Some(actual) = actual else {
                    return false;
                };
                let ord = actual.cmp(value.as_str());
                match op {
                    Op::Eq => ord.is_eq(),
                    Op::Ne => ord.is_ne(),
                    Op::Gt => ord.is_gt(),
                    Op::Ge => ord.is_ge(),
                    Op::Lt => ord.is_lt(),
                    Op::Le => ord.is_le(),
                }
            }
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
    dialect: Dialect,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.text.get(self.at..).unwrap_or_default()
    }

    fn space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn error(&self, message: &str) -> SyntaxError {
        SyntaxError {
            position: self.at,
            message: message.to_owned(),
        }
    }

    /// Consumes `word` (case-insensitive) when it stands alone.
    fn word(&mut self, word: &str) -> bool {
        self.space();
        let rest = self.rest();
        let found = rest
            .get(..word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
            && !rest
                .get(word.len()..)
                .and_then(|r| r.chars().next())
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if found {
            self.at += word.len();
        }
        found
    }

    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut any = vec![self.and()?];
        loop {
            let before = self.at;
            if !self.word("or") {
                break;
            }
            if self.dialect != Dialect::Condition {
                self.at = before;
                self.space();
                return Err(self.error("`OR` is not supported; join comparisons with `AND`"));
            }
            any.push(self.and()?);
        }
        Ok(if any.len() == 1 {
            any.remove(0)
        } else {
            Expr::Or(any)
        })
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut all = vec![self.factor()?];
        while self.word("and") {
            all.push(self.factor()?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Expr::And(all)
        })
    }

    fn factor(&mut self) -> Result<Expr, SyntaxError> {
        self.space();
        if self.rest().starts_with('(') {
            if self.dialect != Dialect::Condition {
                return Err(self.error("parentheses are not supported"));
            }
            self.at += 1;
            let inner = self.or()?;
            self.space();
            if !self.rest().starts_with(')') {
                return Err(self.error("expected `)`"));
            }
            self.at += 1;
            return Ok(inner);
        }
        let key = self.key()?;
        let op = self.op()?;
        let value = self.value()?;
        Ok(Expr::Compare(key, op, value))
    }

    fn key(&mut self) -> Result<String, SyntaxError> {
        self.space();
        let rest = self.rest();
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| self.error("a quoted key has no closing `\"`"))?;
            let key = quoted.get(..end).unwrap_or_default();
            // A condition may name a key no tag can have; it is then not met.
            let too_long = key.chars().count() > MAX_KEY && self.dialect != Dialect::Condition;
            if key.is_empty() || too_long {
                return Err(self.error("a tag must be between 1 and 128 characters in length"));
            }
            if let Some(c) = key.chars().find(|c| !allowed(*c)) {
                return Err(self.error(&format!(
                    "`{c}` is not permitted in tag name or value (letters, digits and ` +-./:=_` are)"
                )));
            }
            self.at += end + 2;
            return Ok(key.to_owned());
        }
        if let Some(name) = rest.strip_prefix('@') {
            let len = name
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(name.len());
            let word = name.get(..len).unwrap_or_default();
            if word.eq_ignore_ascii_case("container") && self.dialect != Dialect::Condition {
                self.at += 1 + len;
                return Ok("@container".to_owned());
            }
            return Err(self.error(match self.dialect {
                Dialect::Condition => "`@container` is not allowed in a condition",
                Dialect::Find => {
                    "an unsupported parameter: `@container` is the only name starting with `@`"
                }
            }));
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 {
            return Err(self.error("expected a tag key"));
        }
        if len > MAX_KEY && self.dialect != Dialect::Condition {
            return Err(self.error("a tag must be between 1 and 128 characters in length"));
        }
        let key = rest.get(..len).unwrap_or_default().to_owned();
        self.at += len;
        Ok(key)
    }

    fn op(&mut self) -> Result<Op, SyntaxError> {
        self.space();
        let rest = self.rest();
        let (op, len) = if rest.starts_with("<>") {
            (Op::Ne, 2)
        } else if rest.starts_with(">=") {
            (Op::Ge, 2)
        } else if rest.starts_with("<=") {
            (Op::Le, 2)
        } else if rest.starts_with('=') {
            (Op::Eq, 1)
        } else if rest.starts_with('>') {
            (Op::Gt, 1)
        } else if rest.starts_with('<') {
            (Op::Lt, 1)
        } else {
            return Err(self.error("expected one of = > >= < <="));
        };
        if op == Op::Ne && self.dialect != Dialect::Condition {
            return Err(self.error("`<>` is not supported"));
        }
        self.at += len;
        Ok(op)
    }

    fn value(&mut self) -> Result<String, SyntaxError> {
        self.space();
        let Some(quoted) = self.rest().strip_prefix('\'') else {
            return Err(self.error("a value is written in single quotes"));
        };
        let end = quoted
            .find('\'')
            .ok_or_else(|| self.error("a value has no closing `'`"))?;
        let value = quoted.get(..end).unwrap_or_default();
        let too_long = value.chars().count() > MAX_VALUE && self.dialect != Dialect::Condition;
        if too_long {
            return Err(self.error("a tag value must be between 0 and 256 characters in length"));
        }
        if let Some(c) = value.chars().find(|c| !allowed(*c)) {
            return Err(self.error(&format!(
                "`{c}` is not permitted in tag name or value (letters, digits and ` +-./:=_` are)"
            )));
        }
        self.at += end + 2;
        Ok(value.to_owned())
    }
}

/// `x-ms-if-tags`, parsed; a malformed one is refused as Azure refuses it.
pub(crate) fn condition(text: &str) -> Result<Expr, StorageError> {
    Expr::parse(text, Dialect::Condition).map_err(|e| {
        StorageError::bad(
            "InvalidHeaderValue",
            format!(
                "The value for one of the HTTP headers is not in the correct format. x-ms-if-tags, at character {}: {}",
                e.position, e.message
            ),
        )
    })
}

/// Find's `where`, parsed.
pub(crate) fn filter(text: &str) -> Result<Expr, StorageError> {
    Expr::parse(text, Dialect::Find).map_err(|e| {
        let message = if e.position == 0 && e.message.starts_with("there can be") {
            format!("Error parsing query: {}", e.message)
        } else {
            format!(
                "Error parsing query at or near character position {}: {}",
                e.position + 1,
                e.message
            )
        };
        StorageError::bad("InvalidQueryParameterValue", message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn tag_sets_follow_azures_rules() {
        assert!(validate(&tags(&[("azAz09 +-./:=_", "azAz09 +-./:=_")])).is_ok());
        let eleven: Tags = (0..11).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert_eq!(validate(&eleven).unwrap_err().code(), "TooManyTags");
        assert!(validate(&eleven[..10].to_vec()).is_ok());
        for bad in [
            tags(&[("", "v")]),
            tags(&[(&"k".repeat(129), "v")]),
            tags(&[("k", &"v".repeat(257))]),
            tags(&[("k", "abc%abc")]),
            tags(&[("abc#ew", "v")]),
            tags(&[("k", "1"), ("k", "2")]),
        ] {
            assert_eq!(validate(&bad).unwrap_err().code(), "InvalidTag", "{bad:?}");
        }
        assert!(validate(&tags(&[(&"k".repeat(128), &"v".repeat(256))])).is_ok());
    }

    #[test]
    fn headers_and_bodies_parse() {
        assert_eq!(
            from_header("a=1&b%20c=x%2By").unwrap(),
            tags(&[("a", "1"), ("b c", "x+y")])
        );
        let body = b"<?xml version=\"1.0\"?><Tags><TagSet><Tag><Key>k</Key><Value>v &amp; w</Value></Tag><Tag><Key>e</Key><Value /></Tag></TagSet></Tags>";
        assert_eq!(
            from_xml(body).unwrap_err().code(),
            "InvalidTag",
            "& is not allowed in a value"
        );
        let body = b"<Tags><TagSet><Tag><Key>k</Key><Value>v/w</Value></Tag><Tag><Key>e</Key><Value /></Tag></TagSet></Tags>";
        let parsed = from_xml(body).unwrap();
        assert_eq!(parsed, tags(&[("k", "v/w"), ("e", "")]));
        assert_eq!(from_xml(to_xml(&parsed).as_bytes()).unwrap(), parsed);
        assert_eq!(
            from_xml(b"<Tags><Bad/></Tags>").unwrap_err().code(),
            "InvalidXmlDocument"
        );
    }

    #[test]
    fn conditions_compare_as_strings() {
        let t = tags(&[("tag1", "val1"), ("tag2", "val2"), (" key 1 +-.:=_/", "1a")]);
        let yes = |e: &str| condition(e).unwrap().matches("c", &t);
        assert!(yes("tag1='val1'"));
        assert!(!yes("tag1='val11'"));
        assert!(yes("tag1>'val'") && !yes("tag1>'val11'"));
        assert!(yes("tag1>='val1'") && !yes("tag1>='vam'"));
        assert!(yes("tag1 <'val11'") && yes("tag1< 'vam'") && !yes("tag1 < 'val1'"));
        assert!(yes("\" key 1 +-.:=_/\"='1a'"));
        assert!(yes("tag1='x' or (tag2='val2' AND tag1<>'v')"));
        assert!(!yes("missing='x'"), "a tag the blob lacks compares false");
        let long = (1..700).fold("tag1 <> 'v0' ".to_owned(), |acc, i| {
            format!("{acc}and tag1 <> 'v{i}'")
        });
        assert!(yes(&long));
        for bad in [
            "adfec",
            "@container='ab'",
            "key111==value1",
            "key+1='value1'",
            "tag1='v",
            "(tag1='v'",
        ] {
            assert_eq!(
                condition(bad).unwrap_err().code(),
                "InvalidHeaderValue",
                "{bad}"
            );
        }
    }

    #[test]
    fn find_allows_and_of_comparisons_only() {
        let e = filter("@container='c1' AND k1='a' and k2>='b'").unwrap();
        assert!(e.matches("c1", &tags(&[("k1", "a"), ("k2", "c")])));
        assert!(!e.matches("c2", &tags(&[("k1", "a"), ("k2", "c")])));
        assert_eq!(e.named_keys(), vec!["@container", "k1", "k2"]);
        for bad in ["astring", "key1<>'ab'", "key1='ab' or key2='cd'", "(k='a')"] {
            let err = filter(bad).unwrap_err();
            assert_eq!(err.code(), "InvalidQueryParameterValue", "{bad}");
        }
        assert!(filter("@container='c'").is_ok(), "also within a container");
        assert!(condition("@container='c'").is_err(), "never in a condition");
        let eleven = (0..11)
            .map(|i| format!("k{i}='v'"))
            .collect::<Vec<_>>()
            .join(" and ");
        assert!(filter(&eleven).is_err());
        let ten = (0..10)
            .map(|i| format!("k{i}='v'"))
            .collect::<Vec<_>>()
            .join(" and ");
        assert!(
            filter(&format!("{ten} and k0>'a'")).is_ok(),
            "a key counts once"
        );
    }
}
