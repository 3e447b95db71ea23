//! OData `$filter` expressions, the part of the grammar clients of Graph send
//! for directory lookups: `prop eq 'v'`, `ne`, `startswith(prop,'v')`,
//! `collection/any(x:x eq 'v')`, `and`, `or`, `not` and parentheses. Anything
//! else is refused with the offending text, never matched loosely.

use serde_json::Value;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    Eq(String, Literal),
    Ne(String, Literal),
    StartsWith(String, String),
    Any(String, String),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

/// A literal of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Text(String),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    Comma,
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' => {
                chars.next();
            }
            '(' | ')' | ',' => {
                chars.next();
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            '\'' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            s.push('\'');
                        }
                        Some('\'') => break,
                        Some(ch) => s.push(ch),
                        None => return Err("a quoted string is not closed".into()),
                    }
                }
                out.push(Token::Text(s));
            }
            _ => {
                let mut w = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_alphanumeric() || "_/:.-@$".contains(ch) {
                        w.push(ch);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if w.is_empty() {
                    return Err(format!("unexpected `{c}`"));
                }
                out.push(Token::Word(w));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, want: Token, what: &str) -> Result<(), String> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            _ => Err(format!("expected {what}")),
        }
    }

    fn word(&mut self, what: &str) -> Result<String, String> {
        match self.next() {
            Some(Token::Word(w)) => Ok(w),
            _ => Err(format!("expected {what}")),
        }
    }

    fn text(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Text(s)) => Ok(s),
            _ => Err("expected a quoted string".into()),
        }
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, String> {
        if self.keyword("not") {
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            self.expect(Token::Close, "`)`")?;
            return Ok(inner);
        }
        let name = self.word("a property name")?;
        if name.eq_ignore_ascii_case("startswith") {
            self.expect(Token::Open, "`(` after startswith")?;
            let property = self.word("a property name")?;
            self.expect(Token::Comma, "`,`")?;
            let prefix = self.text()?;
            self.expect(Token::Close, "`)`")?;
            return Ok(Filter::StartsWith(property, prefix));
        }
        if let Some(collection) = name.strip_suffix("/any") {
            self.expect(Token::Open, "`(` after any")?;
            let lambda = self.word("a lambda such as `c:c`")?;
            let (var, body) = lambda
                .split_once(':')
                .ok_or("expected a lambda such as `c:c`")?;
            if var != body {
                return Err(format!(
                    "the lambda `{lambda}` must compare its variable itself"
                ));
            }
            if !self.keyword("eq") {
                return Err("only `eq` is supported inside any()".into());
            }
            let value = self.text()?;
            self.expect(Token::Close, "`)`")?;
            return Ok(Filter::Any(collection.to_owned(), value));
        }
        let op = self.word("an operator")?;
        let literal = match self.next() {
            Some(Token::Text(s)) => Literal::Text(s),
            Some(Token::Word(w)) if w == "true" => Literal::Bool(true),
            Some(Token::Word(w)) if w == "false" => Literal::Bool(false),
            Some(Token::Word(w)) if w == "null" => Literal::Null,
            _ => return Err(format!("expected a value after `{name} {op}`")),
        };
        match op.to_ascii_lowercase().as_str() {
            "eq" => Ok(Filter::Eq(name, literal)),
            "ne" => Ok(Filter::Ne(name, literal)),
            _ => Err(format!(
                "the operator `{op}` is not supported (eq, ne, startswith, any)"
            )),
        }
    }
}

impl Filter {
    /// Parses a `$filter` value.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut parser = Parser {
            tokens: tokens(text)?,
            at: 0,
        };
        let filter = parser.or()?;
        if parser.at != parser.tokens.len() {
            return Err("unexpected text after the expression".into());
        }
        Ok(filter)
    }

    /// Whether a Graph object matches; text compares without regard to case, as
    /// Graph compares names.
    pub(crate) fn matches(&self, object: &Value) -> bool {
        match self {
            Self::Eq(p, l) => equal(field(object, p), l),
            Self::Ne(p, l) => !equal(field(object, p), l),
            Self::StartsWith(p, prefix) => field(object, p)
                .and_then(Value::as_str)
                .is_some_and(|s| starts_with(s, prefix)),
            Self::Any(p, v) => field(object, p)
                .and_then(Value::as_array)
                .is_some_and(|items| {
                    items
                        .iter()
                        .any(|i| i.as_str().is_some_and(|s| s.eq_ignore_ascii_case(v)))
                }),
            Self::And(a, b) => a.matches(object) && b.matches(object),
            Self::Or(a, b) => a.matches(object) || b.matches(object),
            Self::Not(a) => !a.matches(object),
        }
    }
}

fn field<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    object
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn equal(value: Option<&Value>, literal: &Literal) -> bool {
    match (value, literal) {
        (Some(Value::String(s)), Literal::Text(t)) => s.eq_ignore_ascii_case(t),
        (Some(Value::Bool(b)), Literal::Bool(l)) => b == l,
        (None | Some(Value::Null), Literal::Null) => true,
        _ => false,
    }
}

fn starts_with(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sp() -> Value {
        json!({
            "displayName": "Build Bot",
            "appId": "0b1c",
            "accountEnabled": true,
            "servicePrincipalNames": ["0b1c", "api://build"],
        })
    }

    #[test]
    fn the_filters_az_sends_match_as_graph_matches_them() {
        let cases = [
            ("displayName eq 'build bot'", true),
            ("displayName eq 'Build'", false),
            ("startswith(displayName,'build')", true),
            ("startswith(displayName, 'bot')", false),
            ("servicePrincipalNames/any(c:c eq 'api://build')", true),
            ("servicePrincipalNames/any(c:c eq 'api://other')", false),
            ("appId eq '0b1c' and accountEnabled eq true", true),
            (
                "appId eq 'x' or (displayName ne 'x' and not accountEnabled eq false)",
                true,
            ),
            ("mail eq null", true),
            ("displayName eq 'it''s'", false),
        ];
        for (text, want) in cases {
            let f = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(f.matches(&sp()), want, "{text}");
        }
    }

    #[test]
    fn quotes_double_to_escape() {
        assert_eq!(
            Filter::parse("displayName eq 'it''s'").unwrap(),
            Filter::Eq("displayName".into(), Literal::Text("it's".into()))
        );
    }

    #[test]
    fn what_is_not_understood_is_refused_not_matched_loosely() {
        for text in [
            "displayName gt 'a'",
            "displayName eq 'open",
            "startswith(displayName 'a')",
            "tags/any(c:d eq 'x')",
            "displayName eq 'a' extra",
            "(displayName eq 'a'",
            "",
            "displayName eq",
            "endswith(displayName,'a')",
        ] {
            assert!(Filter::parse(text).is_err(), "{text} was accepted");
        }
    }
}
