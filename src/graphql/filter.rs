//! Filters: a `<Type>Filter` input (one field per column, each of a shared operator input
//! per column type, plus `and`, `or`, `not`) turned into a [`Cond`].
//!
//! Semantics are SQL's on both backends: operators on one column are ANDed; `ne` and
//! `notIn` do not match NULL (use `isNull`); `like` is case-sensitive and `ilike` folds
//! ASCII case, both with `%` and `_` wildcards and `\` as escape; JSON `contains` matches
//! when every top-level key of the given object is present with an exactly equal value
//! (JSON types included; numbers compare as numbers), `hasKey` when the object has the key.
//!
//! Filters are bounded so that any filter the API accepts is one both databases can run
//! (SQLite's expression depth and bound-parameter limits, PostgreSQL's 65,535 parameters):
//! at most [`MAX_CONDITIONS`] conditions (each operator on a column, each key of a
//! `contains`, each element of an `and`/`or`), `and`/`or`/`not` nested at most
//! [`MAX_NESTING`] deep, at most [`MAX_LIST_VALUES`] values in one `in`/`notIn` list and
//! [`MAX_FILTER_VALUES`] in all lists of a filter. Beyond: `BAD_USER_INPUT` naming the
//! field. A `like`/`ilike` pattern ending in a lone `\` matches a backslash there.

use async_graphql::Value as GqlValue;

use crate::catalog::{Column, Kind, Table};
use crate::db::sql_types::{Json, Timestamp};
use crate::error::{AppError, AppResult};
use crate::graphql::names;
use crate::sql::{Bind, CmpOp, Cond};

/// The shared operator input of a column kind.
pub fn filter_type(table: &Table, column: &Column) -> String {
    if names::is_id(table, column) {
        return "IDFilter".into();
    }
    match column.kind {
        Kind::Id => "IDFilter".into(),
        Kind::Text | Kind::Date => "StringFilter".into(),
        Kind::Int if column.big => "BigIntFilter".into(),
        Kind::Int => "IntFilter".into(),
        Kind::Real => "FloatFilter".into(),
        Kind::Bool => "BooleanFilter".into(),
        Kind::Timestamp => "DateTimeFilter".into(),
        Kind::Json => "JSONFilter".into(),
        Kind::Enum(_) => format!("{}Filter", names::enum_type(table, column)),
    }
}

/// The most conditions in one filter.
pub const MAX_CONDITIONS: usize = 200;
/// The deepest nesting of `and`, `or` and `not`.
pub const MAX_NESTING: usize = 10;
/// The most values in one `in` / `notIn` list.
pub const MAX_LIST_VALUES: usize = 1000;
/// The most values in all `in` / `notIn` lists of a filter.
pub const MAX_FILTER_VALUES: usize = 5000;

/// What a filter has used of its bounds so far.
#[derive(Default)]
struct Budget {
    conditions: usize,
    values: usize,
}

impl Budget {
    fn condition(&mut self, n: usize, path: &str) -> AppResult<()> {
        self.conditions += n;
        if self.conditions > MAX_CONDITIONS {
            return Err(AppError::bad_input(
                path,
                format!("a filter may hold at most {MAX_CONDITIONS} conditions (operators, `contains` keys, `and`/`or` elements)"),
            ));
        }
        Ok(())
    }

    fn values(&mut self, n: usize, path: &str) -> AppResult<()> {
        if n > MAX_LIST_VALUES {
            return Err(AppError::bad_input(
                path,
                format!("a list may hold at most {MAX_LIST_VALUES} values, not {n}"),
            ));
        }
        self.values += n;
        if self.values > MAX_FILTER_VALUES {
            return Err(AppError::bad_input(
                path,
                format!("the lists of a filter may hold at most {MAX_FILTER_VALUES} values in all"),
            ));
        }
        Ok(())
    }
}

/// Parses a `<Type>Filter` value.
pub fn parse(table: &'static Table, value: &GqlValue, path: &str) -> AppResult<Cond> {
    parse_within(table, value, path, &mut Budget::default(), 0)
}

fn parse_within(
    table: &'static Table,
    value: &GqlValue,
    path: &str,
    budget: &mut Budget,
    nesting: usize,
) -> AppResult<Cond> {
    if nesting > MAX_NESTING {
        return Err(AppError::bad_input(path, format!("`and`, `or` and `not` may nest at most {MAX_NESTING} deep")));
    }
    let fields = match value {
        GqlValue::Null => return Ok(Cond::True),
        GqlValue::Object(fields) => fields,
        _ => return Err(AppError::bad_input(path, "a filter is an object")),
    };
    let mut conds = Vec::new();
    for (name, value) in fields {
        let name = name.as_str();
        let here = format!("{path}.{name}");
        match name {
            "and" | "or" => {
                let items = match value {
                    GqlValue::Null => continue,
                    GqlValue::List(items) => items,
                    single => std::slice::from_ref(single),
                };
                budget.condition(items.len(), &here)?;
                let parsed = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| parse_within(table, item, &format!("{here}[{i}]"), budget, nesting + 1))
                    .collect::<AppResult<Vec<_>>>()?;
                conds.push(if name == "and" { Cond::all(parsed) } else { Cond::any(parsed) });
            }
            "not" => {
                if !matches!(value, GqlValue::Null) {
                    conds.push(Cond::Not(Box::new(parse_within(table, value, &here, budget, nesting + 1)?)));
                }
            }
            field => {
                let column =
                    table.columns.iter().find(|c| names::column_field(c) == field && !names::is_secret(c)).ok_or_else(
                        || AppError::bad_input(&here, format!("`{field}` is not a field of {}", table.type_name)),
                    )?;
                conds.push(column_filter(table, column, value, &here, budget)?);
            }
        }
    }
    Ok(Cond::all(conds))
}

fn column_filter(
    table: &Table,
    column: &'static Column,
    value: &GqlValue,
    path: &str,
    budget: &mut Budget,
) -> AppResult<Cond> {
    let ops = match value {
        GqlValue::Null => return Ok(Cond::True),
        GqlValue::Object(ops) => ops,
        _ => return Err(AppError::bad_input(path, "a column filter is an object of operators")),
    };
    let col = column.name;
    let mut conds = Vec::new();
    for (op, operand) in ops {
        let here = format!("{path}.{op}");
        if matches!(operand, GqlValue::Null) {
            continue;
        }
        budget.condition(1, &here)?;
        let one = |v: &GqlValue| bind(table, column, v, &here);
        let mut list = |v: &GqlValue| match v {
            GqlValue::List(items) => {
                budget.values(items.len(), &here)?;
                items.iter().map(one).collect::<AppResult<Vec<_>>>()
            }
            single => Ok(vec![one(single)?]),
        };
        conds.push(match op.as_str() {
            "eq" => Cond::Cmp(col, CmpOp::Eq, one(operand)?),
            "ne" => Cond::Cmp(col, CmpOp::Ne, one(operand)?),
            "lt" => Cond::Cmp(col, CmpOp::Lt, one(operand)?),
            "lte" => Cond::Cmp(col, CmpOp::Lte, one(operand)?),
            "gt" => Cond::Cmp(col, CmpOp::Gt, one(operand)?),
            "gte" => Cond::Cmp(col, CmpOp::Gte, one(operand)?),
            "in" => Cond::in_list(col, list(operand)?),
            "notIn" => {
                Cond::all(vec![Cond::IsNull(col, false), Cond::Not(Box::new(Cond::in_list(col, list(operand)?)))])
            }
            "isNull" => match operand {
                GqlValue::Boolean(null) => Cond::IsNull(col, *null),
                _ => return Err(AppError::bad_input(&here, "`isNull` takes a boolean")),
            },
            "like" => Cond::like(col, &like_pattern(text(operand, &here)?)),
            "ilike" => Cond::ILike(col, Bind::Text(like_pattern(text(operand, &here)?))),
            "hasKey" => Cond::JsonHasKey(col, Bind::Text(text(operand, &here)?)),
            "contains" => {
                let object = match operand.clone().into_json() {
                    Ok(serde_json::Value::Object(object)) => object,
                    _ => return Err(AppError::bad_input(&here, "`contains` takes a JSON object")),
                };
                // Each key is one condition (`budget.condition` counted the first).
                budget.condition(object.len().saturating_sub(1), &here)?;
                Cond::all(
                    object
                        .into_iter()
                        .map(|(key, value)| Cond::JsonKeyEquals(col, Bind::Text(key), Bind::Json(Json(value))))
                        .collect(),
                )
            }
            other => return Err(AppError::bad_input(&here, format!("unknown operator `{other}`"))),
        });
    }
    Ok(Cond::all(conds))
}

/// A `LIKE` pattern both databases accept: a lone `\` at the end (an escape of nothing,
/// an error on PostgreSQL) is a literal backslash.
fn like_pattern(mut pattern: String) -> String {
    let trailing = pattern.chars().rev().take_while(|c| *c == '\\').count();
    if trailing % 2 == 1 {
        pattern.push('\\');
    }
    pattern
}

fn text(value: &GqlValue, path: &str) -> AppResult<String> {
    match value {
        GqlValue::String(text) => Ok(text.clone()),
        _ => Err(AppError::bad_input(path, "expected a string")),
    }
}

/// A GraphQL input value as a bind of the column's kind.
fn bind(table: &Table, column: &Column, value: &GqlValue, path: &str) -> AppResult<Bind> {
    let bad = |what: &str| AppError::bad_input(path, format!("expected {what} for `{}`", names::column_field(column)));
    Ok(match (column.kind, value) {
        (Kind::Enum(values), GqlValue::Enum(_) | GqlValue::String(_)) => {
            let name = match value {
                GqlValue::Enum(name) => name.as_str(),
                GqlValue::String(name) => name.as_str(),
                _ => "",
            };
            let stored = name.to_ascii_lowercase();
            if !values.contains(&stored.as_str()) {
                return Err(bad(&format!("a {} value", names::enum_type(table, column))));
            }
            Bind::Text(stored)
        }
        (Kind::Enum(_), _) => return Err(bad("an enum value")),
        (Kind::Id | Kind::Text | Kind::Date, GqlValue::String(text)) => Bind::Text(text.clone()),
        (Kind::Int, GqlValue::Number(n)) => Bind::Int(n.as_i64().ok_or_else(|| bad("an integer"))?),
        (Kind::Int, GqlValue::String(text)) if column.big => {
            Bind::Int(text.parse().map_err(|_| bad("a 64-bit integer"))?)
        }
        (Kind::Real, GqlValue::Number(n)) => Bind::Real(n.as_f64().ok_or_else(|| bad("a number"))?),
        (Kind::Bool, GqlValue::Boolean(b)) => Bind::Bool(*b),
        (Kind::Timestamp, GqlValue::String(text)) => Bind::Timestamp(Timestamp::parse_input(text).map_err(|e| {
            AppError::bad_input(
                path,
                format!("expected an RFC 3339 date-time for `{}`: {e}", names::column_field(column)),
            )
        })?),
        (Kind::Json, other) => Bind::Json(Json(other.clone().into_json().map_err(|_| bad("JSON"))?)),
        _ => return Err(bad("a value of the column's type")),
    })
}
