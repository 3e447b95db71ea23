//! Printing results as `az` does: JSON by default, or a table.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::Value;

/// How client commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Pretty JSON.
    Json,
    /// A table of the scalar fields.
    Table,
}

/// Prints a value in `format`.
pub(crate) fn print(value: &Value, format: Format) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Format::Table => println!("{}", table(value)),
    }
}

fn table(value: &Value) -> Table {
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
        for (k, v) in row.iter() {
            if !matches!(v, Value::Object(_) | Value::Array(_)) && !columns.contains(&k) {
                columns.push(k);
            }
        }
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(columns.iter().map(|c| c.as_str()));
    for row in rows {
        table.add_row(columns.iter().map(|c| match row.get(c.as_str()) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }));
    }
    table
}

/// Prints the `value` array of a reply one JSON object per line (log exports).
pub(crate) fn print_lines(reply: &Value) {
    for record in reply
        .get("value")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!("{record}");
    }
}
