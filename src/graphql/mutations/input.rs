//! Mutation inputs: their GraphQL types, generated from the catalog, and the checks every
//! value passes before the database sees it (kinds, enums, ranges, email form, text and
//! JSON limits, JSON shapes). A failure is `BAD_USER_INPUT` naming the input field.
//!
//! Values come out in the form [`Record`](crate::graphql::records::Record)s hold (enums as
//! their stored text, timestamps in the fixed UTC form, JSON as JSON), keyed by column, so
//! a row and a change to it merge by key.

use async_graphql::dynamic::{InputObject, InputValue, ObjectAccessor, TypeRef, ValueAccessor};
use serde_json::{Map, Value};

use super::policy::{self, Shape, TextLimit, MAX_JSON_BYTES};
use crate::catalog::{Column, Kind, Table};
use crate::db::sql_types::Timestamp;
use crate::error::{AppError, AppResult};
use crate::graphql::names;

/// The GraphQL input type of a column's values (without `!`): the same as its output type.
pub fn value_type(table: &Table, column: &Column) -> String {
    crate::graphql::schema::column_type(table, column)
}

fn field_doc(table: &Table, column: &Column, create: bool) -> String {
    let mut doc = column.doc.to_owned();
    if create && !column.nullable && !column.has_default && policy::server_default(table, column) {
        doc.push_str(if column.kind == Kind::Timestamp {
            " Default: now."
        } else {
            " Default: the agent's highest version + 1."
        });
    }
    match column.kind {
        Kind::Text if column.references.is_none() => match policy::text_limit(table, column) {
            TextLimit::Chars(n) => doc.push_str(&format!(" At most {n} characters.")),
            TextLimit::Bytes(n) => doc.push_str(&format!(" At most {} MiB.", n >> 20)),
        },
        Kind::Json => doc.push_str(" At most 8 MiB."),
        _ => {}
    }
    doc
}

/// An input object over some columns of a table; `required` says which are non-null.
pub fn object_input(
    name: impl Into<String>,
    description: impl Into<String>,
    table: &'static Table,
    columns: &[&'static Column],
    required: impl Fn(&Column) -> bool,
) -> InputObject {
    let mut input = InputObject::new(name).description(description);
    for column in columns {
        let ty = value_type(table, column);
        let ty = if required(column) { TypeRef::named_nn(ty) } else { TypeRef::named(ty) };
        input =
            input.field(InputValue::new(names::column_field(column), ty).description(field_doc(table, column, true)));
    }
    input
}

/// `Create<Type>Input`: every column a create takes; required ones are non-null.
pub fn create_input(table: &'static Table) -> InputObject {
    let mut input = object_input(
        format!("Create{}Input", table.type_name),
        format!("A new {} (its id and timestamps are set by the server).", table.type_name),
        table,
        &policy::create_columns(table),
        |column| policy::required_on_create(table, column),
    );
    if table.name == "integrations" {
        input = input.field(
            InputValue::new("apiKey", TypeRef::named_nn(TypeRef::STRING))
                .description("The platform's API key, in plain text: stored encrypted, never returned."),
        );
    }
    input
}

/// `<Type>Patch`: the columns an update may change; absent fields are left alone, `null`
/// sets a nullable column to null.
pub fn patch_input(table: &'static Table) -> InputObject {
    let mut input = InputObject::new(format!("{}Patch", table.type_name)).description(format!(
        "A change to {}: absent fields stay as they are, `null` clears a nullable field.",
        policy::a(table.type_name)
    ));
    for column in policy::patch_columns(table) {
        input = input.field(
            InputValue::new(names::column_field(column), TypeRef::named(value_type(table, column)))
                .description(field_doc(table, column, false)),
        );
    }
    if table.name == "integrations" {
        input = input.field(
            InputValue::new("apiKey", TypeRef::named(TypeRef::STRING))
                .description("A new API key, in plain text: stored encrypted, never returned."),
        );
    }
    input
}

/// A GraphQL value as JSON (enum values as their names).
pub fn json(value: &ValueAccessor<'_>) -> AppResult<Value> {
    value.as_value().clone().into_json().map_err(|e| AppError::bad_input("input", format!("unreadable input: {e}")))
}

/// Reads the given columns' fields of an input object, checked; `prefix` goes before the
/// field names in errors (`traces[3].`).
pub fn read(
    table: &Table,
    columns: &[&'static Column],
    object: &ObjectAccessor<'_>,
    prefix: &str,
) -> AppResult<Map<String, Value>> {
    let mut values = Map::new();
    for column in columns {
        let field = names::column_field(column);
        if let Some(value) = object.get(&field) {
            let checked = check(table, column, &format!("{prefix}{field}"), json(&value)?)?;
            values.insert(column.name.to_owned(), checked);
        }
    }
    Ok(values)
}

/// An optional string field of an input object (`null` is absent).
pub fn string_field(object: &ObjectAccessor<'_>, name: &str) -> AppResult<Option<String>> {
    match object.get(name) {
        Some(value) if !value.is_null() => {
            Ok(Some(value.string().map_err(|_| AppError::bad_input(name, "must be a string"))?.to_owned()))
        }
        _ => Ok(None),
    }
}

/// Checks one value of a column and returns it in stored form.
pub fn check(table: &Table, column: &Column, field: &str, value: Value) -> AppResult<Value> {
    let bad = |message: String| AppError::bad_input(field, format!("`{field}` {message}"));
    if value.is_null() {
        return if column.nullable { Ok(Value::Null) } else { Err(bad("may not be null".into())) };
    }
    match column.kind {
        Kind::Id | Kind::Text => {
            let Value::String(text) = value else {
                return Err(bad("must be a string".into()));
            };
            check_text(table, column, &text).map_err(bad)?;
            if column.name == "email" {
                let email = text.trim().to_lowercase();
                if !crate::validate::is_email(&email) {
                    return Err(bad("must be an email address (`local@domain.tld`)".into()));
                }
                return Ok(Value::String(email));
            }
            Ok(Value::String(text))
        }
        Kind::Date => {
            let text = value.as_str().ok_or_else(|| bad("must be a date (YYYY-MM-DD)".into()))?;
            if text.len() != 10 || chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_err() {
                return Err(bad(format!("must be a date (YYYY-MM-DD), not `{text}`")));
            }
            Ok(value)
        }
        Kind::Enum(values) => {
            let name = value.as_str().ok_or_else(|| bad("must be an enum value".into()))?;
            let stored = name.to_ascii_lowercase();
            if !values.contains(&stored.as_str()) {
                let allowed: Vec<String> = values.iter().map(|v| names::enum_value(v)).collect();
                return Err(bad(format!("must be one of {}", allowed.join(", "))));
            }
            Ok(Value::String(stored))
        }
        Kind::Int => {
            // A `BigInt` may also come as a decimal string (JavaScript loses precision past
            // 2^53); `Int`s beyond 32 bits were refused when the request was validated.
            let n = match &value {
                Value::String(text) if column.big => text.trim().parse::<i64>().ok(),
                _ => value.as_i64(),
            };
            let n =
                n.ok_or_else(
                    || bad(if column.big { "must be a 64-bit integer" } else { "must be an integer" }.into()),
                )?;
            check_range(column, n as f64).map_err(bad)?;
            Ok(Value::from(n))
        }
        Kind::Real => {
            let x = value.as_f64().filter(|x| x.is_finite()).ok_or_else(|| bad("must be a finite number".into()))?;
            check_range(column, x).map_err(bad)?;
            Ok(value)
        }
        Kind::Bool => {
            value.as_bool().ok_or_else(|| bad("must be a boolean".into()))?;
            Ok(value)
        }
        Kind::Timestamp => {
            let text = value.as_str().ok_or_else(|| bad("must be an RFC 3339 date-time".into()))?;
            let at = Timestamp::parse_input(text)
                .map_err(|e| bad(format!("must be an RFC 3339 date-time, not `{text}`: {e}")))?;
            Ok(Value::String(at.to_text()))
        }
        Kind::Json => {
            check_json(&value).map_err(bad)?;
            let shape = policy::shape(table, column);
            if shape == Shape::Steps {
                // Names the step and its field: `traces[3].steps[2].timestamp`.
                check_steps(&value).map_err(|(path, message)| {
                    let field = format!("{field}{path}");
                    AppError::bad_input(&field, format!("`{field}` {message}"))
                })?;
            }
            check_shape(shape, &value).map_err(bad)?;
            Ok(value)
        }
    }
}

fn check_text(table: &Table, column: &Column, text: &str) -> Result<(), String> {
    if text.contains('\0') {
        return Err("may not contain NUL characters".into());
    }
    match policy::text_limit(table, column) {
        TextLimit::Chars(max) if text.chars().count() > max => Err(format!("is longer than {max} characters")),
        TextLimit::Bytes(max) if text.len() > max => Err(format!("is longer than {} MiB", max >> 20)),
        _ => Ok(()),
    }
}

fn check_range(column: &Column, x: f64) -> Result<(), String> {
    match (column.min, column.max) {
        (Some(min), Some(max)) if x < min || x > max => Err(format!("must be between {min} and {max}")),
        (Some(min), None) if x < min => Err(format!("must be at least {min}")),
        (None, Some(max)) if x > max => Err(format!("must be at most {max}")),
        _ => Ok(()),
    }
}

/// JSON values: at most 8 MiB of text, and no NUL characters (PostgreSQL's `jsonb` refuses
/// them).
fn check_json(value: &Value) -> Result<(), String> {
    fn has_nul(value: &Value) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    let size = serde_json::to_vec(value).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_JSON_BYTES {
        return Err(format!("is larger than {} MiB of JSON", MAX_JSON_BYTES >> 20));
    }
    if has_nul(value) {
        return Err("may not contain NUL characters".into());
    }
    Ok(())
}

/// Checks trace steps (`policy::Shape::Steps`): an array of objects whose documented
/// fields, where present, have their documented types. Lenient on absence (every field may
/// be left out), strict on a wrong type. A failure is the path of the value at fault below
/// the column (`[2].timestamp`, or empty for the column itself) and what is wrong.
pub fn check_steps(value: &Value) -> Result<(), (String, String)> {
    let steps = value.as_array().ok_or_else(|| (String::new(), "must be a JSON array of steps".to_owned()))?;
    for (i, step) in steps.iter().enumerate() {
        let Some(step) = step.as_object() else {
            return Err((format!("[{i}]"), format!("must be a step object (step {i} is not an object)")));
        };
        let bad = |key: &str, message: String| Err((format!("[{i}].{key}"), format!("{message} (step {i})")));
        for (key, value) in step {
            let fine = match key.as_str() {
                "step_id" => value.is_string(),
                "timestamp" => match value {
                    Value::String(text) => {
                        if let Err(e) = Timestamp::parse_input(text) {
                            return bad(key, format!("must be an RFC 3339 date-time, not `{text}`: {e}"));
                        }
                        true
                    }
                    _ => false,
                },
                "messages_added" => value.is_array(),
                "tool_calls" => match value {
                    Value::Array(calls) => {
                        if let Some(j) = calls.iter().position(|c| !c.is_object()) {
                            return Err((
                                format!("[{i}].tool_calls[{j}]"),
                                format!("must be a tool call object (step {i}, tool call {j})"),
                            ));
                        }
                        true
                    }
                    _ => false,
                },
                "error" => value.is_string() || value.is_null(),
                "metadata" => value.is_object(),
                _ => true,
            };
            if !fine {
                let expected = match key.as_str() {
                    "step_id" | "error" => "a string",
                    "timestamp" => "an RFC 3339 date-time string",
                    "messages_added" => "an array",
                    "tool_calls" => "an array of objects",
                    _ => "an object",
                };
                return bad(key, format!("must be {expected}, not {}", json_type(value)));
            }
        }
    }
    Ok(())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks a JSON value against its column's shape.
pub fn check_shape(shape: Shape, value: &Value) -> Result<(), String> {
    let array = || value.as_array().ok_or_else(|| "must be a JSON array".to_owned());
    match shape {
        Shape::Any => Ok(()),
        Shape::Object => value.as_object().map(|_| ()).ok_or_else(|| "must be a JSON object".into()),
        Shape::Array => array().map(|_| ()),
        Shape::ArrayOfObjects | Shape::Steps => match array()?.iter().position(|v| !v.is_object()) {
            Some(i) => Err(format!("must be an array of objects (item {i} is not one)")),
            None => Ok(()),
        },
        Shape::ArrayOfStrings => match array()?.iter().position(|v| !v.is_string()) {
            Some(i) => Err(format!("must be an array of strings (item {i} is not one)")),
            None => Ok(()),
        },
        Shape::Nodes | Shape::Edges => {
            let keys: &[&str] = if shape == Shape::Nodes { &["id", "type"] } else { &["id", "source", "target"] };
            let mut ids = std::collections::HashSet::new();
            for (i, item) in array()?.iter().enumerate() {
                let Some(object) = item.as_object() else {
                    return Err(format!("item {i} must be an object"));
                };
                for key in keys {
                    if object.get(*key).and_then(Value::as_str).is_none_or(|s| s.is_empty()) {
                        return Err(format!("item {i} must have a non-empty string `{key}`"));
                    }
                }
                if !ids.insert(object["id"].as_str().unwrap_or_default()) {
                    return Err(format!("item {i} repeats the id `{}`", object["id"].as_str().unwrap_or_default()));
                }
            }
            Ok(())
        }
    }
}

/// Checks that every edge names nodes of the graph; `field` names the edges.
pub fn check_graph(nodes: &Value, edges: &Value) -> Result<(), String> {
    let ids: std::collections::HashSet<&str> =
        nodes.as_array().into_iter().flatten().filter_map(|n| n.get("id").and_then(Value::as_str)).collect();
    for (i, edge) in edges.as_array().into_iter().flatten().enumerate() {
        for end in ["source", "target"] {
            let node = edge.get(end).and_then(Value::as_str).unwrap_or_default();
            if !ids.contains(node) {
                return Err(format!("item {i} has `{end}` `{node}`, which names no node"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;
    use serde_json::json;

    fn column(table: &str, column: &str) -> (&'static Table, &'static Column) {
        let t = catalog::table(table).unwrap();
        (t, t.column(column).unwrap())
    }

    #[test]
    fn values_are_checked_and_normalised() {
        let (t, c) = column("users", "email");
        assert_eq!(check(t, c, "email", json!(" Demo@Example.COM ")).unwrap(), json!("demo@example.com"));
        assert!(check(t, c, "email", json!("nope")).is_err());
        let (t, c) = column("agent_versions", "source");
        assert_eq!(check(t, c, "source", json!("AI_IMPROVED")).unwrap(), json!("ai_improved"));
        assert!(check(t, c, "source", json!("BOGUS")).is_err());
        let (t, c) = column("evals", "accuracy");
        assert!(check(t, c, "accuracy", json!(1.5)).is_err());
        assert!(check(t, c, "accuracy", json!(null)).unwrap().is_null());
        let (t, c) = column("evals", "cohen_kappa");
        assert!(check(t, c, "cohenKappa", json!(-1)).is_ok());
        let (t, c) = column("traces", "steps");
        assert!(check(t, c, "steps", json!({})).is_err());
        assert!(check(t, c, "steps", json!([1])).is_err());
        assert!(check(t, c, "steps", json!(null)).is_err());
        assert!(check(t, c, "steps", json!([{"input": "a\u{0}"}])).is_err());
        let (t, c) = column("traces", "timestamp");
        assert_eq!(
            check(t, c, "timestamp", json!("2026-01-02T03:04:05+01:00")).unwrap(),
            json!("2026-01-02T02:04:05.000000Z")
        );
        let (t, c) = column("agents", "name");
        assert!(check(t, c, "name", json!("x".repeat(201))).is_err());
        assert!(check(t, c, "name", json!("é".repeat(200))).is_ok());
        let (t, c) = column("performance_snapshots", "snapshot_date");
        assert!(check(t, c, "snapshotDate", json!("2026-02-30")).is_err());
        let err = check(t, c, "snapshotDate", json!("x")).unwrap_err();
        assert!(matches!(err, AppError::BadUserInput { field: Some(f), .. } if f == "snapshotDate"));
    }

    #[test]
    fn graphs_name_their_nodes() {
        let nodes = json!([{"id": "a", "type": "t"}, {"id": "b", "type": "t"}]);
        assert!(check_shape(Shape::Nodes, &nodes).is_ok());
        assert!(check_shape(Shape::Nodes, &json!([{"id": "a", "type": "t"}, {"id": "a", "type": "t"}])).is_err());
        assert!(check_graph(&nodes, &json!([{"id": "e", "source": "a", "target": "b"}])).is_ok());
        assert!(check_graph(&nodes, &json!([{"id": "e", "source": "a", "target": "c"}])).is_err());
    }
}
