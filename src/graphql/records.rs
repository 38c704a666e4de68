//! Rows as the graph sees them: a [`Record`] is a row of any table, its values in the
//! catalog's column order (a slot per column, no map per row). Reads load only the columns
//! a query needs ([`Projection::Columns`]) and decode each by the kind its alias carries;
//! a JSON column is kept as the text the database sent and parsed only when a client
//! selects it. Rows written by mutations arrive as maps from the typed `Row` models
//! ([`grouped`]).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::OnceCell;

use diesel::deserialize::{self, FromSql, QueryableByName};
use diesel::pg::Pg;
use diesel::row::{Field as _, NamedRow};
use diesel::sql_types::{BigInt, Bool, Double, Text};
use diesel::sqlite::Sqlite;
use diesel_async::RunQueryDsl;
use serde_json::{Map, Value};

use crate::catalog::Table;
use crate::db::sql_types::{Timestamp, UtcTimestamp};
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::sql::{Columns, Projection, Select};

/// One column's value in a [`Record`].
#[derive(Debug)]
pub enum Slot {
    /// Not loaded (the query did not need it).
    Absent,
    /// A value (`Null` for SQL NULL).
    Value(Value),
    /// A JSON column's text as the database sent it, parsed on first use.
    Json(Box<str>, OnceLock<Value>),
}

impl Slot {
    fn value(&self) -> Option<&Value> {
        match self {
            Slot::Absent => None,
            Slot::Value(value) => Some(value),
            Slot::Json(text, parsed) => Some(parsed.get_or_init(|| serde_json::from_str(text).unwrap_or(Value::Null))),
        }
    }
}

/// A row's slots, one per column of its table.
pub type Row = Box<[Slot]>;

static NULL: Value = Value::Null;

/// A row of some table, and the rows loaded with it.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its table.
    pub table: &'static Table,
    /// Its values, in the table's column order.
    pub row: Arc<Row>,
    /// The rows loaded by the same statement (a page, the children of a page's rows…):
    /// a relation asked of one of them is loaded for all of them at once.
    pub group: Arc<Group>,
}

/// Rows loaded together, with what has been loaded for them: one statement per relation
/// (and per distinct set of list arguments) for the whole group, computed by whichever
/// row asks first while the others wait for it. Lives as long as the request's results.
pub struct Group {
    /// Their table.
    pub table: &'static Table,
    /// The rows' values.
    pub rows: Vec<Arc<Row>>,
    memo: Mutex<HashMap<MemoKey, Arc<OnceCell<Memo>>>>,
}

/// What a group's batch is: the kind of batch, the table and column of the relation, the
/// columns loaded, and anything else that tells two batches apart (list arguments). Built
/// per row without formatting text for the common batches (a parent, an only child).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemoKey(pub &'static str, pub &'static str, pub &'static str, pub Columns, pub String);

impl From<String> for MemoKey {
    fn from(text: String) -> Self {
        MemoKey("", "", "", Columns::none(), text)
    }
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Group({} rows)", self.rows.len())
    }
}

impl Group {
    /// The distinct non-null text values of a column over the group's rows.
    pub fn texts(&self, column: &str) -> Vec<String> {
        let Some(index) = self.table.columns.iter().position(|c| c.name == column) else {
            return Vec::new();
        };
        let mut values: Vec<String> =
            self.rows.iter().filter_map(|row| row[index].value().and_then(Value::as_str).map(str::to_owned)).collect();
        values.sort_unstable();
        values.dedup();
        values
    }

    /// What `key` names for the whole group: computed once by `compute`, shared after.
    pub async fn memo<T, F, Fut>(&self, key: impl Into<MemoKey>, compute: F) -> AppResult<Arc<T>>
    where
        T: Any + Send + Sync,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = AppResult<T>>,
    {
        let cell = self.memo.lock().unwrap_or_else(|e| e.into_inner()).entry(key.into()).or_default().clone();
        let value = cell
            .get_or_try_init(|| async { compute().await.map(|v| Arc::new(v) as Arc<dyn Any + Send + Sync>) })
            .await?
            .clone();
        value.downcast::<T>().map_err(|_| AppError::internal("a batch was memoised under another type"))
    }
}

/// A computed batch, type-erased.
type Memo = Arc<dyn Any + Send + Sync>;

/// Wraps rows loaded together as records of one group.
pub fn group_rows(table: &'static Table, rows: Vec<Row>) -> Vec<Record> {
    let rows: Vec<Arc<Row>> = rows.into_iter().map(Arc::new).collect();
    let group = Arc::new(Group { table, rows: rows.clone(), memo: Mutex::new(HashMap::new()) });
    rows.into_iter().map(|row| Record { table, row, group: group.clone() }).collect()
}

/// Wraps rows given as maps (column → value) as records of one group: what the typed row
/// models of the write path produce.
pub fn grouped(table: &'static Table, rows: Vec<Map<String, Value>>) -> Vec<Record> {
    let rows = rows
        .into_iter()
        .map(|mut map| {
            table.columns.iter().map(|c| map.remove(c.name).map_or(Slot::Absent, Slot::Value)).collect::<Row>()
        })
        .collect();
    group_rows(table, rows)
}

impl Record {
    /// A column's value (`Null` when absent).
    pub fn get(&self, column: &str) -> &Value {
        match self.table.columns.iter().position(|c| c.name == column) {
            Some(index) => self.at(index),
            None => &NULL,
        }
    }

    /// The value of the column at `index` (`Null` when not loaded).
    pub fn at(&self, index: usize) -> &Value {
        self.row.get(index).and_then(Slot::value).unwrap_or(&NULL)
    }

    /// The slot of the column at `index`.
    pub fn slot(&self, index: usize) -> &Slot {
        self.row.get(index).unwrap_or(&Slot::Absent)
    }

    /// A text column's value.
    pub fn text(&self, column: &str) -> Option<&str> {
        self.get(column).as_str()
    }

    /// The row's id.
    pub fn id(&self) -> &str {
        self.text("id").unwrap_or_default()
    }

    /// The loaded columns as a map (column → value).
    pub fn to_map(&self) -> Map<String, Value> {
        self.table
            .columns
            .iter()
            .zip(self.row.iter())
            .filter_map(|(column, slot)| slot.value().map(|v| (column.name.to_owned(), v.clone())))
            .collect()
    }
}

/// A row of a [`Projection::Columns`] select, decoded by its columns' aliases (the kind's
/// letter and the column's index): the slots it has, by index.
struct Decoded(Vec<(usize, Slot)>);

/// How a backend's raw values decode into slots.
trait Decode: diesel::backend::Backend + Sized
where
    String: FromSql<Text, Self>,
    i64: FromSql<BigInt, Self>,
    f64: FromSql<Double, Self>,
    bool: FromSql<Bool, Self>,
    Timestamp: FromSql<UtcTimestamp, Self>,
{
    /// An integer (the backend's integer types).
    fn int(value: Self::RawValue<'_>) -> deserialize::Result<i64> {
        i64::from_sql(value)
    }
    /// A JSON value's text.
    fn json_text(value: Self::RawValue<'_>) -> deserialize::Result<String>;
}

impl Decode for Pg {
    fn int(value: Self::RawValue<'_>) -> deserialize::Result<i64> {
        match value.get_oid().get() {
            21 => <i16 as FromSql<diesel::sql_types::SmallInt, Pg>>::from_sql(value).map(i64::from),
            23 => <i32 as FromSql<diesel::sql_types::Integer, Pg>>::from_sql(value).map(i64::from),
            _ => <i64 as FromSql<BigInt, Pg>>::from_sql(value),
        }
    }

    fn json_text(value: Self::RawValue<'_>) -> deserialize::Result<String> {
        let bytes = value.as_bytes();
        // jsonb's binary form is a version byte (1) and the text; json's is the text.
        let text = match (value.get_oid().get(), bytes.split_first()) {
            (3802, Some((1, rest))) => rest,
            (3802, _) => return Err("unsupported jsonb version".into()),
            _ => bytes,
        };
        Ok(std::str::from_utf8(text)?.to_owned())
    }
}

impl Decode for Sqlite {
    fn json_text(value: Self::RawValue<'_>) -> deserialize::Result<String> {
        <String as FromSql<Text, Sqlite>>::from_sql(value)
    }
}

impl<DB> QueryableByName<DB> for Decoded
where
    DB: Decode,
    String: FromSql<Text, DB>,
    i64: FromSql<BigInt, DB>,
    f64: FromSql<Double, DB>,
    bool: FromSql<Bool, DB>,
    Timestamp: FromSql<UtcTimestamp, DB>,
{
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        let count = diesel::row::Row::field_count(row);
        let mut slots = Vec::with_capacity(count);
        for i in 0..count {
            let Some(field) = diesel::row::Row::get(row, i) else { continue };
            let Some(name) = field.field_name() else { continue };
            let (tag, index) = name.split_at(1);
            let Ok(index) = index.parse::<usize>() else { continue };
            let slot = match field.value() {
                None => Slot::Value(Value::Null),
                Some(raw) => match tag {
                    "s" => Slot::Value(Value::String(String::from_sql(raw)?)),
                    "i" => Slot::Value(Value::from(DB::int(raw)?)),
                    "r" => Slot::Value(Value::from(f64::from_sql(raw)?)),
                    "b" => Slot::Value(Value::Bool(bool::from_sql(raw)?)),
                    "t" => Slot::Value(Value::String(Timestamp::from_sql(raw)?.to_text())),
                    "j" => Slot::Json(DB::json_text(raw)?.into_boxed_str(), OnceLock::new()),
                    _ => continue,
                },
            };
            slots.push((index, slot));
        }
        Ok(Decoded(slots))
    }
}

/// Runs `select` (which returns rows: every column unless it names some) and loads the
/// rows of its table.
pub async fn load(db: &Db, mut select: Select) -> AppResult<Vec<Record>> {
    let table = select.table;
    if matches!(select.projection, Projection::Rows) {
        select.projection = Projection::Columns(Columns::all(table));
    }
    let load = async {
        Ok::<Vec<Decoded>, AppError>(crate::with_read_conn!(db, select, |conn, B| select
            .prepare::<B>()
            .load(conn)
            .await))
    };
    let rows = crate::db::counting_rows(load, Vec::len).await?;
    let width = table.columns.len();
    let rows = rows
        .into_iter()
        .map(|Decoded(slots)| {
            let mut row: Vec<Slot> = (0..width).map(|_| Slot::Absent).collect();
            for (index, slot) in slots {
                if index < width {
                    row[index] = slot;
                }
            }
            row.into_boxed_slice()
        })
        .collect();
    Ok(group_rows(table, rows))
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct KeyedCount {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    key: Option<String>,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Runs a `Projection::Count` select.
pub async fn count(db: &Db, select: Select) -> AppResult<i64> {
    let count: Count = crate::with_read_conn!(db, select, |conn, B| select.prepare::<B>().get_result(conn).await);
    Ok(count.n)
}

/// Runs a `Projection::CountBy` select: count per key.
pub async fn count_by(db: &Db, select: Select) -> AppResult<HashMap<String, i64>> {
    let rows: Vec<KeyedCount> = crate::with_read_conn!(db, select, |conn, B| select.prepare::<B>().load(conn).await);
    Ok(rows.into_iter().filter_map(|r| r.key.map(|k| (k, r.n))).collect())
}

/// The aggregates of some rows: how many, and per numeric column the sum, average,
/// minimum and maximum (absent or null when no row has a value).
#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    /// Rows counted.
    pub count: i64,
    /// `sum`, `avg`, `min`, `max`: column → value.
    pub values: [Map<String, Value>; 4],
}

/// The names of [`Aggregate::values`], in order.
pub const AGGREGATES: [&str; 4] = ["sum", "avg", "min", "max"];

#[derive(QueryableByName)]
struct AggregateRow {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    key: Option<String>,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = Text)]
    sum: String,
    #[diesel(sql_type = Text)]
    avg: String,
    #[diesel(sql_type = Text)]
    min: String,
    #[diesel(sql_type = Text)]
    max: String,
}

#[derive(QueryableByName)]
struct AggregateOne {
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = Text)]
    sum: String,
    #[diesel(sql_type = Text)]
    avg: String,
    #[diesel(sql_type = Text)]
    min: String,
    #[diesel(sql_type = Text)]
    max: String,
}

fn objects(texts: [&str; 4]) -> AppResult<[Map<String, Value>; 4]> {
    let parse = |text: &str| match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(AppError::internal("an aggregate is not a JSON object")),
    };
    Ok([parse(texts[0])?, parse(texts[1])?, parse(texts[2])?, parse(texts[3])?])
}

/// Runs a `Projection::Aggregate(None, …)` select.
pub async fn aggregate(db: &Db, select: Select) -> AppResult<Aggregate> {
    let row: AggregateOne = crate::with_read_conn!(db, select, |conn, B| select.prepare::<B>().get_result(conn).await);
    Ok(Aggregate { count: row.n, values: objects([&row.sum, &row.avg, &row.min, &row.max])? })
}

/// Runs a `Projection::Aggregate(Some(key), …)` select: the aggregates per key.
pub async fn aggregate_by(db: &Db, select: Select) -> AppResult<HashMap<String, Aggregate>> {
    let rows: Vec<AggregateRow> = crate::with_read_conn!(db, select, |conn, B| select.prepare::<B>().load(conn).await);
    rows.into_iter()
        .filter_map(|r| {
            let key = r.key.clone()?;
            Some(objects([&r.sum, &r.avg, &r.min, &r.max]).map(|values| (key, Aggregate { count: r.n, values })))
        })
        .collect()
}

/// The aggregates of records already loaded (for lists that are assembled in memory).
pub fn aggregate_records(records: &[Record], columns: &[&'static str]) -> Aggregate {
    let mut values: [Map<String, Value>; 4] = Default::default();
    for column in columns {
        let numbers: Vec<f64> = records.iter().filter_map(|r| r.get(column).as_f64()).collect();
        if numbers.is_empty() {
            continue;
        }
        let sum: f64 = numbers.iter().sum();
        let min = numbers.iter().copied().fold(f64::INFINITY, f64::min);
        let max = numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        for (slot, value) in values.iter_mut().zip([sum, sum / numbers.len() as f64, min, max]) {
            slot.insert((*column).to_owned(), serde_json::json!(value));
        }
    }
    Aggregate { count: records.len() as i64, values }
}
