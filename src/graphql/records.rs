//! Rows as the graph sees them: a [`Record`] is a row of any table, loaded through its
//! typed `Row` model (so each backend's values decode in one place) and kept as a map from
//! column to JSON value, which the schema's generic resolvers read.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::Sqlite;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::catalog::Table;
use crate::db::{Db, Pool};
use crate::error::{AppError, AppResult};
use crate::sql::Select;

/// A row of some table, and the rows loaded with it.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its table.
    pub table: &'static Table,
    /// Column → value.
    pub values: Arc<Map<String, Value>>,
    /// The rows loaded by the same statement (a page, the children of a page's rows…):
    /// a relation asked of one of them is loaded for all of them at once.
    pub group: Arc<Group>,
}

/// Rows loaded together, with what has been loaded for them: one statement per relation
/// (and per distinct set of list arguments) for the whole group, computed by whichever
/// row asks first while the others wait for it. Lives as long as the request's results.
pub struct Group {
    /// The rows' values.
    pub rows: Vec<Arc<Map<String, Value>>>,
    memo: Mutex<HashMap<String, Arc<OnceCell<Memo>>>>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Group({} rows)", self.rows.len())
    }
}

impl Group {
    /// The distinct non-null text values of a column over the group's rows.
    pub fn texts(&self, column: &str) -> Vec<String> {
        let mut values: Vec<String> =
            self.rows.iter().filter_map(|row| row.get(column).and_then(Value::as_str).map(str::to_owned)).collect();
        values.sort();
        values.dedup();
        values
    }

    /// What `key` names for the whole group: computed once by `compute`, shared after.
    pub async fn memo<T, F, Fut>(&self, key: String, compute: F) -> AppResult<Arc<T>>
    where
        T: Any + Send + Sync,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = AppResult<T>>,
    {
        let cell = self.memo.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().clone();
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
pub fn grouped(table: &'static Table, rows: Vec<Map<String, Value>>) -> Vec<Record> {
    let rows: Vec<Arc<Map<String, Value>>> = rows.into_iter().map(Arc::new).collect();
    let group = Arc::new(Group { rows: rows.clone(), memo: Mutex::new(HashMap::new()) });
    rows.into_iter().map(|values| Record { table, values, group: group.clone() }).collect()
}

impl Record {
    /// A column's value (`Null` when absent).
    pub fn get(&self, column: &str) -> &Value {
        self.values.get(column).unwrap_or(&Value::Null)
    }

    /// A text column's value.
    pub fn text(&self, column: &str) -> Option<&str> {
        self.get(column).as_str()
    }

    /// The row's id.
    pub fn id(&self) -> &str {
        self.text("id").unwrap_or_default()
    }
}

/// Runs `select` (which returns rows) and loads the rows of its table.
pub async fn load(db: &Db, select: Select) -> AppResult<Vec<Record>> {
    crate::with_row_model!(select.table.name, |R| load_as::<R>(db, select).await,
        else Err(AppError::internal(format!("no row model for table `{}`", select.table.name))))
}

async fn load_as<R>(db: &Db, select: Select) -> AppResult<Vec<Record>>
where
    R: QueryableByName<Pg> + QueryableByName<Sqlite> + Serialize + Send + 'static,
{
    let table = select.table;
    let rows: Vec<R> = match &db.pool {
        Pool::Postgres(pool) => {
            let mut conn = pool.get().await?;
            select.prepare::<Pg>().load(&mut *conn).await?
        }
        Pool::Sqlite(pool) => {
            let mut conn = pool.get().await?;
            select.prepare::<Sqlite>().load(&mut *conn).await?
        }
    };
    let maps = rows
        .into_iter()
        .map(|row| match serde_json::to_value(row) {
            Ok(Value::Object(values)) => Ok(values),
            Ok(_) => Err(AppError::internal(format!("a `{}` row is not an object", table.name))),
            Err(e) => Err(AppError::internal(e)),
        })
        .collect::<AppResult<Vec<_>>>()?;
    Ok(grouped(table, maps))
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
    let count: Count = match &db.pool {
        Pool::Postgres(pool) => {
            let mut conn = pool.get().await?;
            select.prepare::<Pg>().get_result(&mut *conn).await?
        }
        Pool::Sqlite(pool) => {
            let mut conn = pool.get().await?;
            select.prepare::<Sqlite>().get_result(&mut *conn).await?
        }
    };
    Ok(count.n)
}

/// Runs a `Projection::CountBy` select: count per key.
pub async fn count_by(db: &Db, select: Select) -> AppResult<HashMap<String, i64>> {
    let rows: Vec<KeyedCount> = match &db.pool {
        Pool::Postgres(pool) => {
            let mut conn = pool.get().await?;
            select.prepare::<Pg>().load(&mut *conn).await?
        }
        Pool::Sqlite(pool) => {
            let mut conn = pool.get().await?;
            select.prepare::<Sqlite>().load(&mut *conn).await?
        }
    };
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
    let row: AggregateOne = match &db.pool {
        Pool::Postgres(pool) => {
            let mut conn = pool.get().await?;
            select.prepare::<Pg>().get_result(&mut *conn).await?
        }
        Pool::Sqlite(pool) => {
            let mut conn = pool.get().await?;
            select.prepare::<Sqlite>().get_result(&mut *conn).await?
        }
    };
    Ok(Aggregate { count: row.n, values: objects([&row.sum, &row.avg, &row.min, &row.max])? })
}

/// Runs a `Projection::Aggregate(Some(key), …)` select: the aggregates per key.
pub async fn aggregate_by(db: &Db, select: Select) -> AppResult<HashMap<String, Aggregate>> {
    let rows: Vec<AggregateRow> = match &db.pool {
        Pool::Postgres(pool) => {
            let mut conn = pool.get().await?;
            select.prepare::<Pg>().load(&mut *conn).await?
        }
        Pool::Sqlite(pool) => {
            let mut conn = pool.get().await?;
            select.prepare::<Sqlite>().load(&mut *conn).await?
        }
    };
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
