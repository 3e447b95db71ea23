//! The XML the Blob service speaks: escaping, dates, and the block list body.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::error::StorageError;

/// Escapes text for XML content.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// An RFC 1123 date, as Azure writes `Last-Modified`.
pub(crate) fn http_date(secs: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    httpdate::fmt_http_date(t)
}

/// Parses an HTTP date to seconds since the epoch.
pub(crate) fn parse_http_date(text: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(text.trim()).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

/// Which list a block of a Put Block List names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockRef {
    /// The uncommitted block if there is one, else the committed one.
    Latest,
    /// A block of the current committed list.
    Committed,
    /// A staged block.
    Uncommitted,
}

/// Parses `<BlockList><Latest>id</Latest>…</BlockList>`.
pub(crate) fn parse_block_list(body: &[u8]) -> Result<Vec<(BlockRef, String)>, StorageError> {
    let invalid = |why: String| {
        StorageError::bad(
            "InvalidXmlDocument",
            format!("XML specified is not syntactically valid: {why}"),
        )
    };
    let mut reader = Reader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut out = Vec::new();
    let mut current: Option<BlockRef> = None;
    let mut saw_root = false;
    let mut buf = Vec::new();
    loop {
        match reader
            .read_event_into(&mut buf)
            .map_err(|e| invalid(e.to_string()))?
        {
            Event::Start(e) => match e.name().as_ref() {
                b"BlockList" => saw_root = true,
                b"Latest" => current = Some(BlockRef::Latest),
                b"Committed" => current = Some(BlockRef::Committed),
                b"Uncommitted" => current = Some(BlockRef::Uncommitted),
                other => {
                    return Err(invalid(format!(
                        "unexpected element `{}`",
                        String::from_utf8_lossy(other)
                    )));
                }
            },
            Event::Text(t) => {
                let kind = current.ok_or_else(|| invalid("text outside a block element".into()))?;
                let id = t
                    .unescape()
                    .map_err(|e| invalid(e.to_string()))?
                    .into_owned();
                out.push((kind, id));
            }
            Event::End(e) => {
                if e.name().as_ref() != b"BlockList" {
                    current = None;
                }
            }
            // `<BlockList/>` commits an empty blob (adlfs's exclusive create does);
            // an empty block element names no block.
            Event::Empty(e) => match e.name().as_ref() {
                b"BlockList" => saw_root = true,
                b"Latest" => out.push((BlockRef::Latest, String::new())),
                b"Committed" => out.push((BlockRef::Committed, String::new())),
                b"Uncommitted" => out.push((BlockRef::Uncommitted, String::new())),
                other => {
                    return Err(invalid(format!(
                        "unexpected element `{}`",
                        String::from_utf8_lossy(other)
                    )));
                }
            },
            Event::Eof => break,
            Event::Decl(_)
            | Event::Comment(_)
            | Event::CData(_)
            | Event::PI(_)
            | Event::DocType(_) => {}
        }
        buf.clear();
    }
    if !saw_root {
        return Err(invalid("the root element must be `BlockList`".into()));
    }
    Ok(out)
}

/// Parses an ISO 8601 UTC time as SAS fields carry it (`2026-11-22T15:00:00Z`,
/// `2026-11-22T15:00Z` or `2026-11-22`).
pub(crate) fn parse_iso8601(text: &str) -> Option<i64> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Some(t.as_second());
    }
    if let Some(short) = text.strip_suffix('Z').filter(|s| s.len() == 16)
        && let Ok(t) = format!("{short}:00Z").parse::<jiff::Timestamp>()
    {
        return Some(t.as_second());
    }
    let date = text.parse::<jiff::civil::Date>().ok()?;
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists_parse_and_garbage_is_refused() {
        let body = br#"<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>QUFB</Latest><Committed>QkJC</Committed><Uncommitted>Q0ND</Uncommitted></BlockList>"#;
        assert_eq!(
            parse_block_list(body).unwrap(),
            vec![
                (BlockRef::Latest, "QUFB".into()),
                (BlockRef::Committed, "QkJC".into()),
                (BlockRef::Uncommitted, "Q0ND".into())
            ]
        );
        assert!(parse_block_list(b"<Nope/>").is_err());
        assert_eq!(
            parse_block_list(b"<?xml version=\"1.0\"?><BlockList />").unwrap(),
            vec![]
        );
        assert_eq!(
            parse_block_list(b"<BlockList><Latest/></BlockList>").unwrap(),
            vec![(BlockRef::Latest, String::new())]
        );
        assert!(parse_block_list(b"not xml at all <<<").is_err());
    }

    #[test]
    fn dates_round_trip() {
        let d = http_date(1_795_000_000);
        assert_eq!(parse_http_date(&d), Some(1_795_000_000));
        assert!(parse_http_date("yesterday").is_none());
        assert_eq!(
            parse_iso8601("2026-11-22T15:00:00Z"),
            parse_iso8601("2026-11-22T15:00Z")
        );
        assert_eq!(
            parse_iso8601("2026-11-22").unwrap() + 15 * 3600,
            parse_iso8601("2026-11-22T15:00:00Z").unwrap()
        );
        assert!(parse_iso8601("soon").is_none());
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
