//! SQL types of our own for timestamps and JSON, so one Rust type reads and writes the
//! same value on both backends.
//!
//! * [`UtcTimestamp`] is `timestamptz` on PostgreSQL and, on SQLite, `TEXT` in one
//!   fixed-width UTC form, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so text order is time order.
//!   (Diesel's own `Timestamp` writes a space and a variable-length fraction on SQLite and
//!   sends a zone-less `timestamp` to PostgreSQL.) Rust side: [`Timestamp`], always UTC and
//!   truncated to microseconds, the precision both backends keep.
//! * [`JsonValue`] is `jsonb` on PostgreSQL and JSON text on SQLite (Diesel's `Jsonb`
//!   writes SQLite's binary JSONB, which `json_valid` rejects). Rust side: [`Json`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::query_builder::QueryId;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{self, SqlType};
use diesel::sqlite::{Sqlite, SqliteValue};
use serde::{Deserialize, Serialize};

/// `timestamptz` on PostgreSQL (OID 1184), fixed-width UTC text on SQLite.
#[derive(Debug, Clone, Copy, Default, QueryId, SqlType)]
#[diesel(postgres_type(oid = 1184, array_oid = 1185))]
#[diesel(sqlite_type(name = "Text"))]
pub struct UtcTimestamp;

/// `jsonb` on PostgreSQL (OID 3802), JSON text on SQLite.
#[derive(Debug, Clone, Copy, Default, QueryId, SqlType)]
#[diesel(postgres_type(oid = 3802, array_oid = 3807))]
#[diesel(sqlite_type(name = "Text"))]
pub struct JsonValue;

/// A point in time: UTC, microsecond precision.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = UtcTimestamp)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current time, truncated to microseconds.
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    /// Wraps a `DateTime`, truncating it to microseconds.
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Self(at.trunc_subsecs(6))
    }

    /// The wrapped `DateTime`.
    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// Parses RFC 3339 text (any offset; converted to UTC).
    pub fn parse(text: &str) -> Result<Self, chrono::ParseError> {
        DateTime::parse_from_rfc3339(text).map(|at| Self::from_datetime(at.with_timezone(&Utc)))
    }

    /// Parses a timestamp given by a client: RFC 3339 whose UTC year is 0000–9999 (the
    /// years the fixed-width text form holds; PostgreSQL and SQLite then order and compare
    /// alike). The error says what is wrong.
    pub fn parse_input(text: &str) -> Result<Self, String> {
        let at = Self::parse(text).map_err(|e| format!("not an RFC 3339 date-time ({e})"))?;
        if !(0..=9999).contains(&chrono::Datelike::year(&at.0)) {
            return Err("outside the years 0000–9999 (UTC)".into());
        }
        Ok(at)
    }

    /// The one fixed-width text form: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub fn to_text(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_text())
    }
}

impl FromStr for Timestamp {
    type Err = chrono::ParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Self::from_datetime(at)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_text())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl ToSql<UtcTimestamp, Sqlite> for Timestamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.to_text());
        Ok(IsNull::No)
    }
}

impl FromSql<UtcTimestamp, Sqlite> for Timestamp {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<sql_types::Text, Sqlite>>::from_sql(value)?;
        Ok(Self::parse(&text)?)
    }
}

impl ToSql<UtcTimestamp, Pg> for Timestamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <DateTime<Utc> as ToSql<sql_types::Timestamptz, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<UtcTimestamp, Pg> for Timestamp {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <DateTime<Utc> as FromSql<sql_types::Timestamptz, Pg>>::from_sql(value).map(Self::from_datetime)
    }
}

/// Any JSON value.
#[derive(Debug, Clone, PartialEq, Default, AsExpression, FromSqlRow, Serialize, Deserialize)]
#[diesel(sql_type = JsonValue)]
#[serde(transparent)]
pub struct Json(pub serde_json::Value);

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Self {
        Self(value)
    }
}

impl std::ops::Deref for Json {
    type Target = serde_json::Value;
    fn deref(&self) -> &serde_json::Value {
        &self.0
    }
}

impl ToSql<JsonValue, Sqlite> for Json {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(serde_json::to_string(&self.0)?);
        Ok(IsNull::No)
    }
}

impl FromSql<JsonValue, Sqlite> for Json {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<sql_types::Text, Sqlite>>::from_sql(value)?;
        Ok(Self(serde_json::from_str(&text)?))
    }
}

impl ToSql<JsonValue, Pg> for Json {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <serde_json::Value as ToSql<sql_types::Jsonb, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<JsonValue, Pg> for Json {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <serde_json::Value as FromSql<sql_types::Jsonb, Pg>>::from_sql(value).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_one_fixed_width_form() {
        let at = Timestamp::parse("2026-01-02T03:04:05.1234567+02:00").unwrap();
        assert_eq!(at.to_text(), "2026-01-02T01:04:05.123456Z");
        let whole = Timestamp::parse("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(whole.to_text(), "2026-01-02T03:04:05.000000Z");
        assert_eq!(Timestamp::now().to_text().len(), 27);
        assert!(Timestamp::parse("2026-01-02 03:04:05").is_err());
        assert!(Timestamp::parse_input("9999-12-31T23:59:59.999999Z").is_ok());
        assert!(Timestamp::parse_input("0000-01-01T00:00:00Z").is_ok());
        assert!(Timestamp::parse_input("9999-12-31T23:59:59-01:00").is_err());
        assert!(Timestamp::parse_input("0000-01-01T00:00:00+01:00").is_err());
    }
}
