//! ARM resource ids: the scopes of RBAC. Compared case-insensitively, as ARM does.

use std::fmt;

use crate::Error;

/// A validated ARM resource id such as `/subscriptions/<s>/resourceGroups/<rg>`.
///
/// Keeps the caller's spelling for display and a lowercase key for comparison.
#[derive(Debug, Clone)]
pub struct ResourceId {
    text: String,
    key: String,
}

impl ResourceId {
    /// Parses an id: it starts with `/`, has no empty segment and no trailing `/`
    /// (except the root `/` itself).
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] saying what is malformed.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text == "/" {
            return Ok(Self {
                text: "/".into(),
                key: "/".into(),
            });
        }
        if !text.starts_with('/') {
            return Err(Error::invalid(format!(
                "scope `{text}` must start with `/`"
            )));
        }
        // Every request's RBAC scope passes here: an ASCII id (the usual one) is
        // checked in two passes over its bytes without branching per byte, and
        // without decoding characters.
        let (empty, forbidden) = if text.is_ascii() {
            let bytes = text.as_bytes();
            let doubled = bytes
                .iter()
                .zip(bytes.get(1..).unwrap_or_default())
                .fold(false, |seen, (&a, &b)| seen | ((a == b'/') & (b == b'/')));
            let forbidden = bytes.iter().fold(false, |seen, &b| {
                seen | (b < 0x20) | (b == 0x7f) | (b == b'?') | (b == b'#')
            });
            (doubled || text.ends_with('/'), forbidden)
        } else {
            (
                text.ends_with('/') || text.contains("//"),
                text.chars().any(|c| c.is_control() || c == '?' || c == '#'),
            )
        };
        if empty {
            return Err(Error::invalid(format!(
                "scope `{text}` has an empty segment"
            )));
        }
        if forbidden {
            return Err(Error::invalid(format!(
                "scope `{text}` holds a character ids cannot contain"
            )));
        }
        Ok(Self {
            text: text.to_owned(),
            key: text.to_ascii_lowercase(),
        })
    }

    /// The id of a subscription.
    pub fn subscription(subscription_id: &str) -> Self {
        let text = format!("/subscriptions/{subscription_id}");
        Self {
            key: text.to_ascii_lowercase(),
            text,
        }
    }

    /// The id as the caller spelled it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The lowercase comparison key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether `other` is this scope or lies below it.
    pub fn contains(&self, other: &ResourceId) -> bool {
        if self.key == "/" {
            return true;
        }
        other.key == self.key
            || (other.key.starts_with(&self.key)
                && other.key.as_bytes().get(self.key.len()) == Some(&b'/'))
    }

    /// The id with one more `/type/name` pair.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] when a segment is empty or holds `/`.
    pub fn child(&self, kind: &str, name: &str) -> Result<Self, Error> {
        let base = if self.key == "/" {
            ""
        } else {
            self.text.as_str()
        };
        Self::parse(&format!("{base}/{kind}/{name}"))
    }

    /// The subscription id segment, if the id lies in a subscription.
    pub fn subscription_id(&self) -> Option<&str> {
        let mut parts = self.text.split('/').skip(1);
        match (parts.next(), parts.next()) {
            (Some(s), Some(id)) if s.eq_ignore_ascii_case("subscriptions") => Some(id),
            _ => None,
        }
    }
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for ResourceId {}

impl std::hash::Hash for ResourceId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_is_case_insensitive_and_segment_aligned() {
        let sub = ResourceId::parse("/subscriptions/ABC").unwrap();
        let rg = ResourceId::parse("/subscriptions/abc/resourceGroups/rg1").unwrap();
        let other = ResourceId::parse("/subscriptions/abcd").unwrap();
        assert!(sub.contains(&rg));
        assert!(sub.contains(&sub));
        assert!(!rg.contains(&sub));
        assert!(!sub.contains(&other));
        assert!(ResourceId::parse("/").unwrap().contains(&rg));
        assert_eq!(rg.subscription_id(), Some("abc"));
    }

    #[test]
    fn malformed_scopes_are_refused() {
        for bad in [
            "",
            "subscriptions/x",
            "/subscriptions/",
            "/subscriptions//rg",
            "/a?b",
            "/a#b",
            "/a\tb",
            "/a\u{7f}b",
            "/caf\u{e9}\u{85}",
        ] {
            assert!(ResourceId::parse(bad).is_err(), "{bad:?}");
        }
        // A long id with one flaw anywhere: a pass over chunks of bytes sees it in any.
        let long = format!("/subscriptions/s/resourceGroups/{}", "r".repeat(200));
        assert!(ResourceId::parse(&long).is_ok());
        for at in [1, 17, 31, 64, 100, long.len() - 2] {
            for flaw in ["/", "?", "#", "\u{1}", "\u{7f}"] {
                let mut bad = long.clone();
                let flaw = if flaw == "/" { "//" } else { flaw };
                bad.replace_range(at..=at, flaw);
                assert!(ResourceId::parse(&bad).is_err(), "{bad:?}");
            }
        }
        // Names need not be ASCII.
        let id = ResourceId::parse("/subscriptions/s/resourceGroups/Caf\u{e9}").unwrap();
        assert_eq!(id.key(), "/subscriptions/s/resourcegroups/caf\u{e9}");
    }
}
