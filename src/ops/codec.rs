//! Rows of any table of the catalog as portable JSON, and back.
//!
//! Reading: one query per page of a table turns every column into text on the database
//! side, in one canonical form per kind whatever the backend (timestamps in the fixed UTC
//! form `YYYY-MM-DDTHH:MM:SS.ffffffZ`, doubles with enough digits to round-trip exactly,
//! booleans, JSON text), packed into one JSON array per row; [`decode`] then types each
//! value by its column's [`Kind`]. Writing: [`Cell`]s, typed by kind, bound as parameters of
//! a multi-row `INSERT` ([`InsertRows`]) on either backend.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
use diesel::sqlite::Sqlite;
use diesel::QueryResult;
use serde_json::{Map, Number, Value};

use super::conn::ident;
use crate::catalog::{Column, Kind, Table};
use crate::db::sql_types::{Json, JsonValue, Timestamp, UtcTimestamp};
use crate::db::Backend;
use crate::graphql::mutations::{input, policy, policy::Shape};

/// The expression that reads `column` as canonical text on `backend`.
fn text_expr(backend: Backend, column: &Column) -> String {
    let c = ident(column.name);
    match (backend, column.kind) {
        (Backend::Postgres, Kind::Timestamp) => {
            format!("to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        }
        (Backend::Postgres, Kind::Int | Kind::Real | Kind::Bool | Kind::Json) => {
            format!("{c}::text")
        }
        // 17 significant digits always parse back to the same double.
        (Backend::Sqlite, Kind::Real) => {
            format!("CASE WHEN {c} IS NULL THEN NULL ELSE printf('%!.17g', {c}) END")
        }
        (Backend::Sqlite, Kind::Int | Kind::Bool) => format!("CAST({c} AS TEXT)"),
        _ => c,
    }
}

/// `SELECT <one JSON array of the row's values as text> AS v FROM table [WHERE id > param]
/// ORDER BY id LIMIT n`: one page of the table in id order.
pub(crate) fn page_sql(backend: Backend, table: &Table, after: bool, limit: usize) -> String {
    let values: Vec<String> = table.columns.iter().map(|c| text_expr(backend, c)).collect();
    let (array, param) = match backend {
        Backend::Postgres => (format!("json_build_array({})::text", values.join(", ")), "$1"),
        Backend::Sqlite => (format!("json_array({})", values.join(", ")), "?"),
    };
    let id = ident("id");
    let filter = if after { format!(" WHERE {id} > {param}") } else { String::new() };
    format!("SELECT {array} AS v FROM {}{filter} ORDER BY {id} LIMIT {limit}", ident(table.name))
}

/// Extra setup for reading doubles exactly on PostgreSQL (shortest exact output).
pub(crate) const PG_READ_SETUP: &str = "SET LOCAL extra_float_digits = 3";

/// Decodes one row read by [`page_sql`] into a JSON object, column name → value, typed by
/// the columns' kinds.
pub(crate) fn decode(table: &Table, row: &str) -> Result<Map<String, Value>, String> {
    let texts: Vec<Option<String>> =
        serde_json::from_str(row).map_err(|e| format!("{}: unreadable row from the database: {e}", table.name))?;
    if texts.len() != table.columns.len() {
        return Err(format!(
            "{}: the database returned {} values for {} columns",
            table.name,
            texts.len(),
            table.columns.len()
        ));
    }
    let mut object = Map::new();
    for (column, text) in table.columns.iter().zip(texts) {
        let value = match text {
            None => Value::Null,
            Some(text) => {
                decode_value(column.kind, &text).map_err(|e| format!("{}.{}: {e}", table.name, column.name))?
            }
        };
        object.insert(column.name.to_owned(), value);
    }
    Ok(object)
}

fn decode_value(kind: Kind, text: &str) -> Result<Value, String> {
    Ok(match kind {
        Kind::Int => Value::Number(text.parse::<i64>().map_err(|e| format!("`{text}` is not an integer: {e}"))?.into()),
        Kind::Real => {
            let x = text.parse::<f64>().map_err(|e| format!("`{text}` is not a number: {e}"))?;
            match Number::from_f64(x) {
                Some(n) => Value::Number(n),
                // JSON has no NaN or infinities: they travel as strings.
                None => Value::String(non_finite_name(x).to_owned()),
            }
        }
        Kind::Bool => Value::Bool(match text {
            "true" | "t" | "1" => true,
            "false" | "f" | "0" => false,
            other => return Err(format!("`{other}` is not a boolean")),
        }),
        Kind::Json => serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?,
        Kind::Timestamp => {
            Value::String(Timestamp::parse(text).map_err(|e| format!("`{text}` is not a timestamp: {e}"))?.to_text())
        }
        Kind::Id | Kind::Text | Kind::Date | Kind::Enum(_) => Value::String(text.to_owned()),
    })
}

fn non_finite_name(x: f64) -> &'static str {
    if x.is_nan() {
        "NaN"
    } else if x > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// A value to write, typed by its column's kind (`None` is SQL `NULL` of that type).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Real(Option<f64>),
    Bool(Option<bool>),
    Timestamp(Option<Timestamp>),
    Json(Option<Json>),
}

impl Cell {
    /// The text of a text-like cell (ids), if any.
    pub(crate) fn as_text(&self) -> Option<&str> {
        match self {
            Cell::Text(Some(text)) => Some(text),
            _ => None,
        }
    }
}

/// Checks a row of a dump and types its values: every column of the table must be present,
/// no other key, each value of its column's kind (enums within their values, dates real
/// dates), `null` only where the column allows it. For a nullable JSON column, `null` is
/// SQL `NULL`.
pub(crate) fn encode(table: &Table, mut object: Map<String, Value>) -> Result<Vec<Cell>, String> {
    check_shapes(table, &object)?;
    let mut cells = Vec::with_capacity(table.columns.len());
    for column in table.columns {
        let value = object.remove(column.name).ok_or_else(|| format!("column `{}` is missing", column.name))?;
        cells.push(encode_value(column, value).map_err(|e| format!("column `{}`: {e}", column.name))?);
    }
    if let Some(extra) = object.keys().next() {
        return Err(format!("`{extra}` is not a column of {}", table.name));
    }
    Ok(cells)
}

/// The JSON shapes the API checks on every write that a dump must hold too: each step of a
/// trace's `steps` array (its documented fields), named by the trace's `trace_id` and the
/// step. (A `steps` value that is no array, written before the API checked it, is loaded
/// as it was: a restore does not refuse a database's own old rows wholesale.)
fn check_shapes(table: &Table, object: &Map<String, Value>) -> Result<(), String> {
    for column in table.columns.iter().filter(|c| policy::shape(table, c) == Shape::Steps) {
        if let Some(value) = object.get(column.name).filter(|v| v.is_array()) {
            input::check_steps(value).map_err(|(path, message)| {
                let trace = object.get("trace_id").and_then(Value::as_str).unwrap_or("?");
                format!("trace `{trace}`: column `{}{path}` {message}", column.name)
            })?;
        }
    }
    Ok(())
}

fn encode_value(column: &Column, value: Value) -> Result<Cell, String> {
    if value.is_null() && !column.nullable && column.kind != Kind::Json {
        return Err("null in a NOT NULL column".into());
    }
    let null = value.is_null();
    Ok(match column.kind {
        Kind::Json if null && column.nullable => Cell::Json(None),
        Kind::Json => Cell::Json(Some(Json(value))),
        _ if null => match column.kind {
            Kind::Int => Cell::Int(None),
            Kind::Real => Cell::Real(None),
            Kind::Bool => Cell::Bool(None),
            Kind::Timestamp => Cell::Timestamp(None),
            _ => Cell::Text(None),
        },
        Kind::Int => Cell::Int(Some(value.as_i64().ok_or_else(|| format!("{value} is not a 64-bit integer"))?)),
        Kind::Real => Cell::Real(Some(match &value {
            Value::Number(n) => n.as_f64().ok_or_else(|| format!("{value} is not a number"))?,
            Value::String(s) if s == "NaN" => f64::NAN,
            Value::String(s) if s == "Infinity" => f64::INFINITY,
            Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
            _ => return Err(format!("{value} is not a number")),
        })),
        Kind::Bool => Cell::Bool(Some(value.as_bool().ok_or_else(|| format!("{value} is not a boolean"))?)),
        Kind::Timestamp => {
            let text = value.as_str().ok_or_else(|| format!("{value} is not a timestamp string"))?;
            Cell::Timestamp(Some(Timestamp::parse(text).map_err(|e| format!("`{text}` is not a timestamp: {e}"))?))
        }
        Kind::Id | Kind::Text | Kind::Date | Kind::Enum(_) => {
            let Value::String(text) = value else {
                return Err(format!("{value} is not a string"));
            };
            match column.kind {
                Kind::Id if text.is_empty() => return Err("an empty id".into()),
                Kind::Date if text.len() != 10 || chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").is_err() => {
                    return Err(format!("`{text}` is not a date (YYYY-MM-DD)"))
                }
                Kind::Enum(values) if !values.contains(&text.as_str()) => {
                    return Err(format!("`{text}` is not one of {}", values.join(", ")))
                }
                _ => {}
            }
            Cell::Text(Some(text))
        }
    })
}

/// `INSERT INTO table (every column) VALUES (…), (…)`, every value a bind parameter.
pub(crate) struct InsertRows<'a> {
    pub(crate) table: &'a Table,
    pub(crate) rows: &'a [Vec<Cell>],
}

impl QueryId for InsertRows<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

macro_rules! insert_fragment {
    ($backend:ty) => {
        impl QueryFragment<$backend> for InsertRows<'_> {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, $backend>) -> QueryResult<()> {
                out.unsafe_to_cache_prepared();
                out.push_sql("INSERT INTO ");
                out.push_identifier(self.table.name)?;
                out.push_sql(" (");
                for (i, column) in self.table.columns.iter().enumerate() {
                    if i > 0 {
                        out.push_sql(", ");
                    }
                    out.push_identifier(column.name)?;
                }
                out.push_sql(") VALUES ");
                for (r, row) in self.rows.iter().enumerate() {
                    out.push_sql(if r > 0 { ", (" } else { "(" });
                    for (i, cell) in row.iter().enumerate() {
                        if i > 0 {
                            out.push_sql(", ");
                        }
                        match cell {
                            Cell::Text(v) => out.push_bind_param::<Nullable<Text>, _>(v)?,
                            Cell::Int(v) => out.push_bind_param::<Nullable<BigInt>, _>(v)?,
                            Cell::Real(v) => out.push_bind_param::<Nullable<Double>, _>(v)?,
                            Cell::Bool(v) => out.push_bind_param::<Nullable<Bool>, _>(v)?,
                            Cell::Timestamp(v) => out.push_bind_param::<Nullable<UtcTimestamp>, _>(v)?,
                            Cell::Json(v) => out.push_bind_param::<Nullable<JsonValue>, _>(v)?,
                        }
                    }
                    out.push_sql(")");
                }
                Ok(())
            }
        }
    };
}
insert_fragment!(Pg);
insert_fragment!(Sqlite);

/// How many rows go in one `INSERT`: about 8,000 parameters (SQLite allows 32,766 and
/// PostgreSQL 65,535).
pub(crate) fn rows_per_insert(table: &Table) -> usize {
    (8_000 / table.columns.len().max(1)).max(1)
}

/// Orders the rows of a table that references itself so that every referenced row comes
/// before the rows that reference it (PostgreSQL checks those keys at each statement).
/// Rows in a reference cycle keep their relative order at the end.
pub(crate) fn parents_first(table: &Table, rows: Vec<Vec<Cell>>) -> Vec<Vec<Cell>> {
    let self_refs: Vec<usize> = table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.references.is_some_and(|fk| fk.table == table.name))
        .map(|(i, _)| i)
        .collect();
    let Some(id_index) = table.columns.iter().position(|c| c.kind == Kind::Id) else {
        return rows;
    };
    if self_refs.is_empty() {
        return rows;
    }
    let index: std::collections::HashMap<&str, usize> =
        rows.iter().enumerate().filter_map(|(i, row)| row[id_index].as_text().map(|id| (id, i))).collect();
    let parents: Vec<Vec<usize>> = rows
        .iter()
        .map(|row| self_refs.iter().filter_map(|&c| row[c].as_text().and_then(|id| index.get(id).copied())).collect())
        .collect();
    // 0: not visited, 1: on the stack, 2: placed.
    let mut state = vec![0u8; rows.len()];
    let mut order = Vec::with_capacity(rows.len());
    for start in 0..rows.len() {
        if state[start] != 0 {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        state[start] = 1;
        while let Some((node, next)) = stack.pop() {
            if let Some(&parent) = parents[node].get(next) {
                stack.push((node, next + 1));
                // A parent already on the stack is a cycle: the row goes in anyway, and the
                // database reports the cycle if it cannot take it.
                if state[parent] == 0 {
                    state[parent] = 1;
                    stack.push((parent, 0));
                }
            } else {
                state[node] = 2;
                order.push(node);
            }
        }
    }
    let mut slots: Vec<Option<Vec<Cell>>> = rows.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_referencing_rows_come_after_their_parents() {
        let table = crate::catalog::table("agent_versions").unwrap();
        let id = table.columns.iter().position(|c| c.name == "id").unwrap();
        let parent = table.columns.iter().position(|c| c.name == "parent_version_id").unwrap();
        let row = |name: &str, parent_name: Option<&str>| {
            let mut cells = vec![Cell::Text(None); table.columns.len()];
            cells[id] = Cell::Text(Some(name.to_owned()));
            cells[parent] = Cell::Text(parent_name.map(str::to_owned));
            cells
        };
        let rows = vec![row("c", Some("b")), row("b", Some("a")), row("a", None), row("d", Some("missing"))];
        let ordered: Vec<String> =
            parents_first(table, rows).iter().map(|r| r[id].as_text().unwrap().to_owned()).collect();
        assert_eq!(ordered, ["a", "b", "c", "d"]);
    }

    #[test]
    fn values_are_typed_by_kind() {
        let table = crate::catalog::table("traces").unwrap();
        let has_errors = table.column("has_errors").unwrap();
        assert_eq!(decode_value(has_errors.kind, "t"), Ok(Value::Bool(true)));
        assert_eq!(decode_value(Kind::Real, "0.10000000000000001"), Ok(0.1.into()));
        assert_eq!(
            decode_value(Kind::Timestamp, "2026-01-02T03:04:05.000001Z"),
            Ok("2026-01-02T03:04:05.000001Z".into())
        );
        assert!(encode_value(has_errors, Value::Null).is_err());
        assert!(encode_value(has_errors, "yes".into()).is_err());
        let source = table.column("source").unwrap();
        assert!(encode_value(source, "not-a-source".into()).is_err());
    }
}
