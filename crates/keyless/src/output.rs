//! Printing results as `az` does: `-o json|jsonc|yaml|table|tsv|none`, after
//! `--query` (JMESPath) picked what to print.
//!
//! az's rules, from its output layer (knack): JSON with sorted keys and two
//! spaces; YAML; a table of each object's scalar fields (without `id`, `type`
//! and `etag`, first letters capitalized); TSV with one line per item of a
//! list, an object's values tab-separated (sorted by key, or in the order a
//! query's `{…}` names them), a nested list as its length, a nested object as
//! nothing and `null` as `None`. A closed standard output ends the command
//! quietly, as az does.

use std::io::Write as _;
use std::sync::OnceLock;

use comfy_table::{Table, presets::NOTHING};
use serde_json::Value;

/// How client commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Pretty JSON, keys sorted.
    Json,
    /// The same (colour only on a terminal in az; keyless prints no colour).
    Jsonc,
    /// YAML.
    Yaml,
    /// The same as YAML.
    Yamlc,
    /// A table of the scalar fields.
    Table,
    /// Tab-separated values, for shell scripts.
    Tsv,
    /// Nothing.
    None,
}

/// How much a command says on standard error besides its errors: az's
/// `--only-show-errors`, nothing, `--verbose` and `--debug`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verbosity {
    /// Errors only.
    Quiet,
    /// Errors, warnings and progress.
    Normal,
    /// And each management request: method, URL, status, time.
    Verbose,
    /// And each request's id, for the server's log.
    Debug,
}

static VERBOSITY: OnceLock<Verbosity> = OnceLock::new();

/// Sets this command's verbosity (once, from the global flags).
pub(crate) fn set_verbosity(level: Verbosity) {
    let _ = VERBOSITY.set(level);
}

/// This command's verbosity.
pub(crate) fn verbosity() -> Verbosity {
    VERBOSITY.get().copied().unwrap_or(Verbosity::Normal)
}

/// A warning, as az prints one (not under `--only-show-errors`).
pub(crate) fn warn(message: &str) {
    if verbosity() > Verbosity::Quiet {
        eprintln!("WARNING: {message}");
    }
}

/// Progress of a long command (not under `--only-show-errors`).
pub(crate) fn progress(message: &str) {
    if verbosity() > Verbosity::Quiet {
        eprintln!("{message}");
    }
}

/// A line for `--verbose` (and `--debug`). Never a header or a body: those may
/// carry a token or a secret.
pub(crate) fn info(message: impl FnOnce() -> String) {
    if verbosity() >= Verbosity::Verbose {
        eprintln!("INFO: {}", message());
    }
}

/// A line for `--debug` only; the same rule as [`info`].
pub(crate) fn debug(message: impl FnOnce() -> String) {
    if verbosity() >= Verbosity::Debug {
        eprintln!("DEBUG: {}", message());
    }
}

/// A compiled `--query`.
#[derive(Debug)]
pub(crate) struct Query {
    expression: jmespath::Expression<'static>,
    /// The keys of the query's outermost `{…}`, in the order it names them.
    order: Option<Vec<String>>,
}

static QUERY: OnceLock<Query> = OnceLock::new();

impl Query {
    /// Compiles a JMESPath expression.
    pub(crate) fn compile(text: &str) -> Result<Self, String> {
        let expression = jmespath::compile(text).map_err(|e| e.to_string())?;
        let order = hash_keys(expression.as_ast());
        Ok(Self { expression, order })
    }

    /// Applies the query to a result.
    pub(crate) fn apply(&self, value: &Value) -> Result<Value, String> {
        let found = self.expression.search(value).map_err(|e| e.to_string())?;
        serde_json::to_value(&*found).map_err(|e| e.to_string())
    }
}

/// Sets the `--query` every later [`print()`] applies.
pub(crate) fn set_query(query: Query) {
    let _ = QUERY.set(query);
}

/// The keys of the multi-select hash a query ends in, if it does.
fn hash_keys(ast: &jmespath::ast::Ast) -> Option<Vec<String>> {
    use jmespath::ast::Ast;
    match ast {
        Ast::MultiHash { elements, .. } => Some(elements.iter().map(|e| e.key.clone()).collect()),
        Ast::Projection { rhs, .. } | Ast::Subexpr { rhs, .. } => hash_keys(rhs),
        Ast::Condition { then, .. } => hash_keys(then),
        Ast::Flatten { node, .. } | Ast::ObjectValues { node, .. } => hash_keys(node),
        _ => None,
    }
}

/// Writes `text` and a newline to standard output; a closed output (`| head`)
/// ends the command quietly.
pub(crate) fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    if let Err(e) = written
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// Prints a value in `format`, after the `--query`, if one was given.
pub(crate) fn print(value: &Value, format: Format) {
    let query = QUERY.get();
    let value = match query.map(|q| q.apply(value)) {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            eprintln!("ERROR: the --query could not be applied: {e}");
            std::process::exit(1);
        }
        None => value.clone(),
    };
    let order = query.and_then(|q| q.order.as_deref());
    let text = render(&value, format, order);
    if !text.is_empty() {
        out(text.strip_suffix('\n').unwrap_or(&text));
    }
}

/// A value as `format` prints it.
pub(crate) fn render(value: &Value, format: Format, order: Option<&[String]>) -> String {
    match format {
        Format::Json | Format::Jsonc => {
            serde_json::to_string_pretty(&sorted(value)).unwrap_or_default()
        }
        Format::Yaml | Format::Yamlc => serde_saphyr::to_string(&sorted(value)).unwrap_or_default(),
        Format::Table => table(value, order).to_string(),
        Format::Tsv => tsv(value, order),
        Format::None => String::new(),
    }
}

/// A value with every object's keys sorted, as az prints JSON and YAML.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .filter_map(|k| map.get(k).map(|v| (k.clone(), sorted(v))))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// An object's keys in the order az prints them: as the query's `{…}` names
/// them, else sorted.
fn keys_of<'m>(
    map: &'m serde_json::Map<String, Value>,
    order: Option<&[String]>,
) -> Vec<&'m String> {
    match order {
        Some(order) if map.keys().all(|k| order.contains(k)) => order
            .iter()
            .filter_map(|k| map.get_key_value(k).map(|(k, _)| k))
            .collect(),
        _ => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            keys
        }
    }
}

fn table(value: &Value, order: Option<&[String]>) -> Table {
    let rows: Vec<&serde_json::Map<String, Value>> = match value {
        Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
        Value::Object(map) => match map.get("value") {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
            _ => vec![map],
        },
        _ => Vec::new(),
    };
    let mut columns: Vec<&String> = Vec::new();
    for row in &rows {
        for k in keys_of(row, order) {
            let v = row.get(k).unwrap_or(&Value::Null);
            let skipped = ["id", "type", "etag"].contains(&k.as_str());
            if !skipped
                && !matches!(v, Value::Object(_) | Value::Array(_) | Value::Null)
                && !columns.contains(&k)
            {
                columns.push(k);
            }
        }
    }
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header(columns.iter().map(|c| capitalized(c)));
    for row in rows {
        table.add_row(columns.iter().map(|c| match row.get(c.as_str()) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => python_text(other),
        }));
    }
    table
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A scalar as Python's `str()` writes it, which az's TSV and table use.
fn python_text(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items.len().to_string(),
        Value::Object(_) => String::new(),
    }
}

fn tsv(value: &Value, order: Option<&[String]>) -> String {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut text = String::new();
    for item in items {
        match item {
            Value::Object(map) => {
                let cells: Vec<String> = keys_of(map, order)
                    .iter()
                    .filter_map(|k| map.get(*k))
                    .map(python_text)
                    .collect();
                text.push_str(&cells.join("\t"));
            }
            Value::Array(values) => {
                let cells: Vec<String> = values.iter().map(python_text).collect();
                text.push_str(&cells.join("\t"));
            }
            Value::Bool(b) => text.push_str(if *b { "true" } else { "false" }),
            scalar => text.push_str(&python_text(scalar)),
        }
        text.push('\n');
    }
    text
}

/// Prints the `value` array of a reply one JSON object per line (log exports).
pub(crate) fn print_lines(reply: &Value) {
    for record in reply
        .get("value")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out(&json_line(record));
    }
}

/// `record` as one line of JSON, U+2028 and U+2029 escaped: JSON lets them
/// stand in a string, but some line readers end a line there, which would let
/// a logged name split its record in two.
fn json_line(record: &Value) -> String {
    record
        .to_string()
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

#[cfg(test)]
mod tests;
