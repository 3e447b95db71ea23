//! `--query` and the output formats against az's documented behaviour.

use serde_json::json;

use super::*;

fn queried(value: &Value, query: &str, format: Format) -> String {
    let q = Query::compile(query).unwrap();
    render(&q.apply(value).unwrap(), format, q.order.as_deref())
}

fn roles() -> Value {
    json!([
        { "roleName": "Reader", "roleType": "BuiltInRole", "id": "/r/1", "permissions": [{}], "assignable": true },
        { "roleName": "Owner", "roleType": "BuiltInRole", "id": "/r/2", "permissions": [{}, {}], "assignable": null },
        { "roleName": "Mine", "roleType": "CustomRole", "id": "/r/3", "permissions": [], "assignable": false },
    ])
}

#[test]
fn jmespath_filters_projections_and_functions_select_as_az_does() {
    let v = roles();
    assert_eq!(
        queried(&v, "[?roleName=='Reader'].id", Format::Tsv),
        "/r/1\n"
    );
    assert_eq!(queried(&v, "length(@)", Format::Tsv), "3\n");
    assert_eq!(
        queried(&v, "[?roleType=='CustomRole'] | [0].roleName", Format::Tsv),
        "Mine\n"
    );
    assert_eq!(
        queried(&v, "[].roleName", Format::Tsv),
        "Reader\nOwner\nMine\n"
    );
    assert_eq!(
        queried(&v, "[0].{name: roleName, kind: roleType}", Format::Json),
        "{\n  \"kind\": \"BuiltInRole\",\n  \"name\": \"Reader\"\n}"
    );
    assert!(
        Query::compile("[?roleName==").is_err(),
        "a malformed query is refused"
    );
}

#[test]
fn tsv_writes_rows_as_az_does() {
    let v = roles();
    // Without a query: each object's values sorted by key; a nested list is its length,
    // null is None, a boolean inside a row is Python's True/False.
    assert_eq!(
        render(&v, Format::Tsv, None),
        "True\t/r/1\t1\tReader\tBuiltInRole\nNone\t/r/2\t2\tOwner\tBuiltInRole\nFalse\t/r/3\t0\tMine\tCustomRole\n"
    );
    // A query's hash keeps the order it names, for `read -r name kind`.
    assert_eq!(
        queried(&v, "[].{name: roleName, kind: roleType}", Format::Tsv),
        "Reader\tBuiltInRole\nOwner\tBuiltInRole\nMine\tCustomRole\n"
    );
    // A top-level list puts each item on its line; a list inside it is a tab-separated row;
    // a top-level boolean is lower case; a nested object is empty.
    assert_eq!(
        queried(&v, "[0].[roleName, id]", Format::Tsv),
        "Reader\n/r/1\n"
    );
    assert_eq!(
        queried(&v, "[:2].[roleName, id]", Format::Tsv),
        "Reader\t/r/1\nOwner\t/r/2\n"
    );
    assert_eq!(render(&json!(true), Format::Tsv, None), "true\n");
    assert_eq!(
        render(&json!({"a": {"b": 1}, "c": 2}), Format::Tsv, None),
        "\t2\n"
    );
    assert_eq!(render(&json!("x"), Format::Tsv, None), "x\n");
}

#[test]
fn table_yaml_and_none_print_as_az_does() {
    let table = render(&roles(), Format::Table, None);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["Assignable", "RoleName", "RoleType"]);
    assert!(!table.contains("/r/1"), "id is not a table column");
    let yaml = render(
        &json!({"name": "ws", "tags": {"a": "b"}}),
        Format::Yaml,
        None,
    );
    assert!(yaml.contains("name: ws") && yaml.contains("a: b"), "{yaml}");
    assert_eq!(render(&roles(), Format::None, None), "");
}

#[test]
fn a_log_line_escapes_the_line_separators_a_name_may_hold() {
    let record = json!({ "Path": "data/a\u{2028}{\"OperationName\":\"DeleteBlob\"}\u{2029}b" });
    let line = json_line(&record);
    assert_eq!(line.lines().count(), 1);
    assert!(!line.contains(['\u{2028}', '\u{2029}', '\n']), "{line}");
    assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), record);
}
