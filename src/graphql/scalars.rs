//! The API's own scalars: `DateTime` (RFC 3339, UTC, microseconds) and `JSON` (any value,
//! sent as a value, not as a string).

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

use crate::db::sql_types::{Json, Timestamp};

/// A point in time: RFC 3339 in UTC with microseconds, e.g. `2026-01-15T09:00:00.000000Z`.
/// Input may use any offset; it is converted to UTC.
#[Scalar(name = "DateTime")]
impl ScalarType for Timestamp {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => Timestamp::parse(text).map_err(|_| {
                InputValueError::custom(format!("`{text}` is not an RFC 3339 date-time"))
            }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.to_text())
    }
}

/// Any JSON value: an object, array, string, number, boolean or null.
#[Scalar(name = "JSON")]
impl ScalarType for Json {
    fn parse(value: Value) -> InputValueResult<Self> {
        value
            .into_json()
            .map(Json)
            .map_err(|e| InputValueError::custom(format!("not a JSON value: {e}")))
    }

    fn to_value(&self) -> Value {
        Value::from_json(self.0.clone()).unwrap_or(Value::Null)
    }
}
