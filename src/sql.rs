//! The read queries of the graph, built as data and rendered by Diesel for either backend.
//!
//! Lists need what Diesel's typed DSL cannot say for any table chosen at run time: filters
//! and orderings picked by the client, keyset predicates over the order columns, `NULL`
//! placement that PostgreSQL and SQLite agree on, and "the first N children of every parent"
//! in one statement (a window function). [`Select`] describes such a query over one table
//! of the [`catalog`](crate::catalog); its [`QueryFragment`] implementation writes the SQL
//! through Diesel's [`AstPass`], so identifiers are quoted and parameters bound (`$1` on
//! PostgreSQL, `?` on SQLite) by Diesel, never spliced into the text. Rows load into the
//! typed `Row` models (`QueryableByName`), which decode each backend's values.
//!
//! Where the dialects differ, [`Dialect`] says how: case-sensitive `like` is `LIKE` on
//! PostgreSQL and `GLOB` on SQLite (whose `LIKE` folds ASCII case); `ilike` is
//! `lower(col) LIKE lower(pattern)` on both (ASCII folding: PostgreSQL's text columns use
//! the "C" collation); JSON operators use `jsonb` functions or `json_each`.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Bool, Double, Text, Untyped};
use diesel::sqlite::Sqlite;

use crate::catalog::Table;
use crate::db::sql_types::{Json, JsonValue, Timestamp, UtcTimestamp};

/// A value sent as a bind parameter, typed by its column's kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    /// Text (ids, enums, dates included).
    Text(String),
    /// An integer.
    Int(i64),
    /// A double.
    Real(f64),
    /// A boolean.
    Bool(bool),
    /// A timestamp.
    Timestamp(Timestamp),
    /// A JSON value.
    Json(Json),
}

macro_rules! bind_fragment {
    ($backend:ty) => {
        impl QueryFragment<$backend> for Bind {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, $backend>) -> QueryResult<()> {
                match self {
                    Bind::Text(v) => out.push_bind_param::<Text, _>(v),
                    Bind::Int(v) => out.push_bind_param::<BigInt, _>(v),
                    Bind::Real(v) => out.push_bind_param::<Double, _>(v),
                    Bind::Bool(v) => out.push_bind_param::<Bool, _>(v),
                    Bind::Timestamp(v) => out.push_bind_param::<UtcTimestamp, _>(v),
                    Bind::Json(v) => out.push_bind_param::<JsonValue, _>(v),
                }
            }
        }
    };
}
bind_fragment!(Pg);
bind_fragment!(Sqlite);

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
}

impl CmpOp {
    fn sql(self) -> &'static str {
        match self {
            Self::Eq => " = ",
            Self::Ne => " <> ",
            Self::Lt => " < ",
            Self::Lte => " <= ",
            Self::Gt => " > ",
            Self::Gte => " >= ",
        }
    }
}

/// A condition on the rows of a [`Select`]'s table. Columns are named without their table:
/// they always belong to the table of the select the condition is in.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// Every row.
    True,
    /// No row.
    False,
    /// All of them.
    And(Vec<Cond>),
    /// Any of them.
    Or(Vec<Cond>),
    /// Not this one (SQL semantics: a condition that is NULL stays excluded).
    Not(Box<Cond>),
    /// `col <op> value`.
    Cmp(&'static str, CmpOp, Bind),
    /// `col IN (values)`; an empty list matches nothing.
    In(&'static str, Vec<Bind>),
    /// `col IN (texts)`; an empty list matches nothing. One statement text whatever the
    /// number of values on PostgreSQL (`= ANY($1)`, an array bind), so prepared statements
    /// are reused.
    InText(&'static str, Vec<String>),
    /// `col IS NULL` (or `IS NOT NULL` when false).
    IsNull(&'static str, bool),
    /// Case-sensitive `LIKE` with `%` and `_` (a backslash escapes); built by [`Cond::like`],
    /// which also keeps the pattern translated for SQLite's `GLOB`.
    Like {
        /// The column.
        column: &'static str,
        /// The `LIKE` pattern.
        like: Bind,
        /// The same pattern for `GLOB`.
        glob: Bind,
    },
    /// `LIKE` with ASCII case folding (the pattern a text bind).
    ILike(&'static str, Bind),
    /// The JSON object in the column has this top-level key (a text bind).
    JsonHasKey(&'static str, Bind),
    /// The JSON object in the column has this top-level key (a text bind) with exactly this
    /// value (a JSON bind).
    JsonKeyEquals(&'static str, Bind, Bind),
    /// `col IN (SELECT id FROM …)`: the subquery selects the `id` of its table.
    InSelect(&'static str, Box<Select>),
}

impl Cond {
    /// `col IN (values)`, as [`Cond::InText`] when every value is a text.
    pub fn in_list(column: &'static str, values: Vec<Bind>) -> Cond {
        if values.iter().all(|v| matches!(v, Bind::Text(_))) {
            let texts = values
                .into_iter()
                .filter_map(|v| match v {
                    Bind::Text(text) => Some(text),
                    _ => None,
                })
                .collect();
            Cond::InText(column, texts)
        } else {
            Cond::In(column, values)
        }
    }

    /// Case-sensitive `LIKE`.
    pub fn like(column: &'static str, pattern: &str) -> Cond {
        Cond::Like { column, like: Bind::Text(pattern.to_owned()), glob: Bind::Text(like_to_glob(pattern)) }
    }

    /// All of `conds`, simplified.
    pub fn all(conds: Vec<Cond>) -> Cond {
        let mut kept = Vec::new();
        for cond in conds {
            match cond {
                Cond::True => {}
                Cond::False => return Cond::False,
                Cond::And(inner) => kept.extend(inner),
                other => kept.push(other),
            }
        }
        match kept.len() {
            0 => Cond::True,
            1 => kept.pop().unwrap_or(Cond::True),
            _ => Cond::And(kept),
        }
    }

    /// Any of `conds`, simplified.
    pub fn any(conds: Vec<Cond>) -> Cond {
        let mut kept = Vec::new();
        for cond in conds {
            match cond {
                Cond::False => {}
                Cond::True => return Cond::True,
                other => kept.push(other),
            }
        }
        match kept.len() {
            0 => Cond::False,
            1 => kept.pop().unwrap_or(Cond::False),
            _ => Cond::Or(kept),
        }
    }
}

/// One key of an ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderKey {
    /// The column.
    pub column: &'static str,
    /// Descending.
    pub desc: bool,
    /// Whether the column can hold NULL (NULLs sort last ascending, first descending).
    pub nullable: bool,
}

/// A set of a table's columns: a bit per column, in the catalog's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Columns(u64);

impl Columns {
    /// The most columns a table may have.
    pub const MAX: usize = 64;

    /// No column.
    pub const fn none() -> Self {
        Self(0)
    }

    /// Every column of `table`.
    pub fn all(table: &Table) -> Self {
        let n = table.columns.len();
        Self(if n >= Self::MAX { u64::MAX } else { (1u64 << n) - 1 })
    }

    /// This set and the column at `index`.
    pub fn with_index(self, index: usize) -> Self {
        Self(self.0 | (1u64 << index))
    }

    /// This set and the column `name` of `table` (unchanged when `table` has none).
    pub fn with(self, table: &Table, name: &str) -> Self {
        match table.columns.iter().position(|c| c.name == name) {
            Some(index) => self.with_index(index),
            None => self,
        }
    }

    /// Both sets.
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether the column at `index` is in the set.
    pub fn contains(self, index: usize) -> bool {
        index < Self::MAX && self.0 & (1u64 << index) != 0
    }

    /// The indexes in the set, ascending.
    pub fn indexes(self) -> impl Iterator<Item = usize> {
        (0..Self::MAX).filter(move |i| self.contains(*i))
    }
}

/// The alias a column gets in a [`Projection::Columns`] select: its kind's letter and its
/// index in the table, so that a row decodes without knowing its select
/// ([`crate::graphql::records`]).
pub fn column_alias(table: &Table, index: usize) -> String {
    use crate::catalog::Kind;
    let tag = match table.columns[index].kind {
        Kind::Id | Kind::Text | Kind::Date | Kind::Enum(_) => 's',
        Kind::Int => 'i',
        Kind::Real => 'r',
        Kind::Bool => 'b',
        Kind::Timestamp => 't',
        Kind::Json => 'j',
    };
    format!("{tag}{index}")
}

/// What a select returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// Every column of the table, by name (`table.*`): what the typed row models load.
    Rows,
    /// These columns, each under its [`column_alias`]: what the graph's reads load.
    Columns(Columns),
    /// `id` only (subqueries).
    Id,
    /// One column (subqueries).
    Column(&'static str),
    /// `COUNT(*) AS n`.
    Count,
    /// `col AS key, COUNT(*) AS n … GROUP BY col`.
    CountBy(&'static str),
    /// `COUNT(*) AS n` and, for the numeric columns given, their sums, averages, minima
    /// and maxima as four JSON objects (`sum`, `avg`, `min`, `max`: column → value); grouped
    /// by a column (`key`) when one is given.
    Aggregate(Option<&'static str>, Vec<&'static str>),
}

/// A query over one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// The table (or view).
    pub table: &'static Table,
    /// What it returns.
    pub projection: Projection,
    /// Which rows.
    pub filter: Cond,
    /// In which order (the caller appends the id as the last key).
    pub order: Vec<OrderKey>,
    /// At most this many rows; with `per` set, at most this many per parent.
    pub limit: Option<i64>,
    /// The rows of each of these parents (batched child lists): `filter` holds for the
    /// rows of every parent, `limit` applies per parent.
    pub per: Option<Per>,
}

/// The parents of a batched child list: rows whose `column` is one of `keys`, up to the
/// select's limit for each key, in the select's order within each key. PostgreSQL runs it
/// as a `LATERAL` subquery per key (an index range scan each, stopping at the limit); SQLite
/// as a window function over the rows of all the keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Per {
    /// The column naming the parent.
    pub column: &'static str,
    /// The parents' keys.
    pub keys: Vec<String>,
}

impl Select {
    /// Every row of `table` matching `filter`.
    pub fn rows(table: &'static Table, filter: Cond) -> Self {
        Self { table, projection: Projection::Rows, filter, order: Vec::new(), limit: None, per: None }
    }

    /// Only these columns of the rows (each under its [`column_alias`]).
    pub fn columns(self, columns: Columns) -> Self {
        Self { projection: Projection::Columns(columns), ..self }
    }

    /// The ids of the rows of `table` matching `filter` (for subqueries).
    pub fn ids(table: &'static Table, filter: Cond) -> Self {
        Self { projection: Projection::Id, ..Self::rows(table, filter) }
    }
}

/// How the two backends spell what they spell differently.
pub trait Dialect: diesel::backend::Backend {
    /// How to fold ASCII letters (only) to lower case: the text before and after the
    /// expression. SQLite's `lower()` folds only ASCII; PostgreSQL's folds every letter,
    /// so it uses `translate()`.
    const ASCII_LOWER: (&'static str, &'static str);
    /// How to build a JSON object text from key/value pairs: the text before and after.
    const JSON_OBJECT: (&'static str, &'static str);
    /// Writes a case-sensitive `LIKE` (`%`, `_`, backslash escapes).
    fn like<'b>(
        out: &mut AstPass<'_, 'b, Self>,
        table: &str,
        column: &str,
        like: &'b Bind,
        glob: &'b Bind,
    ) -> QueryResult<()>;
    /// Writes "the JSON object has this top-level key".
    fn json_has_key<'b>(out: &mut AstPass<'_, 'b, Self>, table: &str, column: &str, key: &'b Bind) -> QueryResult<()>;
    /// Writes `col IN (texts)` (`values` not empty).
    fn in_texts<'b>(
        out: &mut AstPass<'_, 'b, Self>,
        table: &str,
        column: &str,
        values: &'b [String],
    ) -> QueryResult<()>;
    /// Writes a batched child list ([`Per`]).
    fn per_parent<'b>(
        select: &'b Select,
        columns: Columns,
        per: &'b Per,
        out: &mut AstPass<'_, 'b, Self>,
    ) -> QueryResult<()>
    where
        Bind: QueryFragment<Self>;
    /// Writes "the JSON object has this top-level key with exactly this value".
    fn json_key_equals<'b>(
        out: &mut AstPass<'_, 'b, Self>,
        table: &str,
        column: &str,
        key: &'b Bind,
        value: &'b Bind,
    ) -> QueryResult<()>;
}

fn push_column<DB: diesel::backend::Backend>(
    out: &mut AstPass<'_, '_, DB>,
    table: &str,
    column: &str,
) -> QueryResult<()> {
    out.push_identifier(table)?;
    out.push_sql(".");
    out.push_identifier(column)
}

impl Dialect for Pg {
    const ASCII_LOWER: (&'static str, &'static str) =
        ("translate(", ", 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')");
    const JSON_OBJECT: (&'static str, &'static str) = ("json_build_object(", ")::text");

    fn in_texts<'b>(
        out: &mut AstPass<'_, 'b, Self>,
        table: &str,
        column: &str,
        values: &'b [String],
    ) -> QueryResult<()> {
        push_column(out, table, column)?;
        out.push_sql(" = ANY(");
        out.push_bind_param::<diesel::sql_types::Array<Text>, _>(values)?;
        out.push_sql(")");
        Ok(())
    }

    fn per_parent<'b>(
        select: &'b Select,
        columns: Columns,
        per: &'b Per,
        out: &mut AstPass<'_, 'b, Self>,
    ) -> QueryResult<()>
    where
        Bind: QueryFragment<Self>,
    {
        // For each parent key (in array order), an index range scan that stops at the limit.
        let table = select.table;
        out.push_sql("SELECT ");
        write_aliases(table, columns, out)?;
        out.push_sql(" FROM unnest(");
        out.push_bind_param::<diesel::sql_types::Array<Text>, _>(&per.keys)?;
        out.push_sql(") WITH ORDINALITY AS iofold_p(k, n) CROSS JOIN LATERAL (SELECT ");
        write_columns(table, columns, out)?;
        out.push_sql(" FROM ");
        out.push_identifier(table.name)?;
        out.push_sql(" WHERE ");
        push_column(out, table.name, per.column)?;
        out.push_sql(" = iofold_p.k");
        if select.filter != Cond::True {
            out.push_sql(" AND ");
            write_cond(table.name, &select.filter, out)?;
        }
        if !select.order.is_empty() {
            out.push_sql(" ORDER BY ");
            write_order(table.name, &select.order, out)?;
        }
        if let Some(limit) = select.limit {
            out.push_sql(" LIMIT ");
            out.push_sql(&limit.to_string());
        }
        out.push_sql(") AS iofold_page ORDER BY iofold_p.n");
        for key in &select.order {
            out.push_sql(", ");
            write_order_key(out, key, |out| alias_of(table, key.column, out))?;
        }
        Ok(())
    }

    fn like<'b>(
        out: &mut AstPass<'_, 'b, Self>,
        table: &str,
        column: &str,
        like: &'b Bind,
        _: &'b Bind,
    ) -> QueryResult<()> {
        push_column(out, table, column)?;
        out.push_sql(" LIKE ");
        like.walk_ast(out.reborrow())?;
        out.push_sql(" ESCAPE '\\'");
        Ok(())
    }

    fn json_has_key<'b>(out: &mut AstPass<'_, 'b, Self>, table: &str, column: &str, key: &'b Bind) -> QueryResult<()> {
        out.push_sql("(jsonb_typeof(");
        push_column(out, table, column)?;
        out.push_sql(") = 'object' AND jsonb_exists(");
        push_column(out, table, column)?;
        out.push_sql(", ");
        key.walk_ast(out.reborrow())?;
        out.push_sql("))");
        Ok(())
    }

    fn json_key_equals<'b>(
        out: &mut AstPass<'_, 'b, Self>,
        table: &str,
        column: &str,
        key: &'b Bind,
        value: &'b Bind,
    ) -> QueryResult<()> {
        out.push_sql("(jsonb_typeof(");
        push_column(out, table, column)?;
        out.push_sql(") = 'object' AND (");
        push_column(out, table, column)?;
        out.push_sql(" -> ");
        key.walk_ast(out.reborrow())?;
        out.push_sql(") = ");
        value.walk_ast(out.reborrow())?;
        out.push_sql(")");
        Ok(())
    }
}

impl Dialect for Sqlite {
    const ASCII_LOWER: (&'static str, &'static str) = ("lower(", ")");
    const JSON_OBJECT: (&'static str, &'static str) = ("json_object(", ")");

    fn in_texts<'b>(
        out: &mut AstPass<'_, 'b, Self>,
        table: &str,
        column: &str,
        values: &'b [String],
    ) -> QueryResult<()> {
        push_column(out, table, column)?;
        out.push_sql(" IN (");
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            out.push_bind_param::<Text, _>(value)?;
        }
        out.push_sql(")");
        Ok(())
    }

    fn per_parent<'b>(
        select: &'b Select,
        columns: Columns,
        per: &'b Per,
        out: &mut AstPass<'_, 'b, Self>,
    ) -> QueryResult<()>
    where
        Bind: QueryFragment<Self>,
    {
        // The first `limit` rows of each parent, in order: a window function.
        let table = select.table;
        out.push_sql("SELECT ");
        write_aliases(table, columns, out)?;
        out.push_sql(" FROM (SELECT ");
        write_columns(table, columns, out)?;
        out.push_sql(", ROW_NUMBER() OVER (PARTITION BY ");
        push_column(out, table.name, per.column)?;
        out.push_sql(" ORDER BY ");
        write_order(table.name, &select.order, out)?;
        out.push_sql(") AS iofold_rn FROM ");
        out.push_identifier(table.name)?;
        out.push_sql(" WHERE ");
        if per.keys.is_empty() {
            out.push_sql("1 = 0");
        } else {
            Self::in_texts(out, table.name, per.column, &per.keys)?;
        }
        if select.filter != Cond::True {
            out.push_sql(" AND ");
            write_cond(table.name, &select.filter, out)?;
        }
        out.push_sql(") AS iofold_page");
        if let Some(limit) = &select.limit {
            out.push_sql(" WHERE iofold_rn <= ");
            out.push_sql(&limit.to_string());
        }
        out.push_sql(" ORDER BY ");
        alias_of(table, per.column, out)?;
        out.push_sql(", iofold_rn");
        Ok(())
    }

    fn like<'b>(
        out: &mut AstPass<'_, 'b, Self>,
        table: &str,
        column: &str,
        _: &'b Bind,
        glob: &'b Bind,
    ) -> QueryResult<()> {
        // SQLite's LIKE ignores ASCII case; GLOB does not.
        push_column(out, table, column)?;
        out.push_sql(" GLOB ");
        glob.walk_ast(out.reborrow())
    }

    fn json_has_key<'b>(out: &mut AstPass<'_, 'b, Self>, table: &str, column: &str, key: &'b Bind) -> QueryResult<()> {
        out.push_sql("(json_type(");
        push_column(out, table, column)?;
        out.push_sql(") = 'object' AND EXISTS (SELECT 1 FROM json_each(");
        push_column(out, table, column)?;
        out.push_sql(") AS iofold_j WHERE iofold_j.key = ");
        key.walk_ast(out.reborrow())?;
        out.push_sql("))");
        Ok(())
    }

    fn json_key_equals<'b>(
        out: &mut AstPass<'_, 'b, Self>,
        table: &str,
        column: &str,
        key: &'b Bind,
        value: &'b Bind,
    ) -> QueryResult<()> {
        // json_each gives each member's JSON type and value; numbers compare as numbers
        // (1 = 1.0, as jsonb does), strings as text, objects and arrays as minified JSON.
        out.push_sql("(json_type(");
        push_column(out, table, column)?;
        out.push_sql(") = 'object' AND EXISTS (SELECT 1 FROM json_each(");
        push_column(out, table, column)?;
        out.push_sql(") AS iofold_j WHERE iofold_j.key = ");
        key.walk_ast(out.reborrow())?;
        out.push_sql(" AND CASE json_type(");
        value.walk_ast(out.reborrow())?;
        out.push_sql(") WHEN 'integer' THEN iofold_j.type IN ('integer', 'real') AND iofold_j.value = json_extract(");
        value.walk_ast(out.reborrow())?;
        out.push_sql(", '$') WHEN 'real' THEN iofold_j.type IN ('integer', 'real') AND iofold_j.value = json_extract(");
        value.walk_ast(out.reborrow())?;
        out.push_sql(", '$') WHEN 'text' THEN iofold_j.type = 'text' AND iofold_j.value = json_extract(");
        value.walk_ast(out.reborrow())?;
        out.push_sql(
            ", '$') WHEN 'true' THEN iofold_j.type = 'true' WHEN 'false' THEN iofold_j.type = 'false' \
             WHEN 'null' THEN iofold_j.type = 'null' ELSE iofold_j.type = json_type(",
        );
        value.walk_ast(out.reborrow())?;
        out.push_sql(") AND json(iofold_j.value) = json(");
        value.walk_ast(out.reborrow())?;
        out.push_sql(") END))");
        Ok(())
    }
}

/// Translates a `LIKE` pattern (`%`, `_`, backslash escapes) into a `GLOB` pattern.
pub fn like_to_glob(pattern: &str) -> String {
    let mut glob = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => push_glob_literal(&mut glob, escaped),
                None => push_glob_literal(&mut glob, '\\'),
            },
            '%' => glob.push('*'),
            '_' => glob.push('?'),
            other => push_glob_literal(&mut glob, other),
        }
    }
    glob
}

fn push_glob_literal(glob: &mut String, c: char) {
    match c {
        '*' | '?' | '[' => {
            glob.push('[');
            glob.push(c);
            glob.push(']');
        }
        other => glob.push(other),
    }
}

/// A [`Select`] ready to run: its conditions' values turned into binds once, so the AST
/// passes can borrow them.
#[derive(Debug, Clone)]
pub struct Prepared<DB> {
    select: Select,
    marker: std::marker::PhantomData<DB>,
}

impl Select {
    /// The query for backend `DB`.
    pub fn prepare<DB: Dialect>(self) -> Prepared<DB> {
        Prepared { select: self, marker: std::marker::PhantomData }
    }
}

impl<DB> QueryId for Prepared<DB> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB> Query for Prepared<DB> {
    type SqlType = Untyped;
}

impl<DB> QueryFragment<DB> for Prepared<DB>
where
    DB: Dialect,
    Bind: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        write_select(&self.select, &mut out)
    }
}

fn write_select<'b, DB>(select: &'b Select, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()>
where
    DB: Dialect,
    Bind: QueryFragment<DB>,
{
    let table = select.table.name;
    if let Some(per) = &select.per {
        let columns = match &select.projection {
            Projection::Columns(columns) => *columns,
            _ => Columns::all(select.table),
        };
        return DB::per_parent(select, columns, per, out);
    }
    out.push_sql("SELECT ");
    match &select.projection {
        Projection::Rows => {
            out.push_identifier(table)?;
            out.push_sql(".*");
        }
        Projection::Columns(columns) => write_columns(select.table, *columns, out)?,
        Projection::Id => push_column(out, table, "id")?,
        Projection::Column(column) => push_column(out, table, column)?,
        Projection::Count => out.push_sql("COUNT(*) AS n"),
        Projection::CountBy(column) => {
            push_column(out, table, column)?;
            out.push_sql(" AS key, COUNT(*) AS n");
        }
        Projection::Aggregate(by, columns) => {
            if let Some(by) = by {
                push_column(out, table, by)?;
                out.push_sql(" AS key, ");
            }
            out.push_sql("COUNT(*) AS n");
            let (open, close) = DB::JSON_OBJECT;
            for function in ["sum", "avg", "min", "max"] {
                out.push_sql(", ");
                out.push_sql(open);
                for (i, column) in columns.iter().enumerate() {
                    if i > 0 {
                        out.push_sql(", ");
                    }
                    out.push_sql("'");
                    out.push_sql(column);
                    out.push_sql("', ");
                    out.push_sql(function);
                    out.push_sql("(");
                    push_column(out, table, column)?;
                    out.push_sql(")");
                }
                out.push_sql(close);
                out.push_sql(" AS ");
                out.push_sql(function);
            }
        }
    }
    out.push_sql(" FROM ");
    out.push_identifier(table)?;
    write_where(select, out)?;
    if let Projection::CountBy(column) | Projection::Aggregate(Some(column), _) = &select.projection {
        out.push_sql(" GROUP BY ");
        push_column(out, table, column)?;
    }
    if !select.order.is_empty()
        && matches!(
            select.projection,
            Projection::Rows | Projection::Columns(_) | Projection::Id | Projection::Column(_)
        )
    {
        out.push_sql(" ORDER BY ");
        write_order(table, &select.order, out)?;
    }
    if let Some(limit) = select.limit {
        out.push_sql(" LIMIT ");
        out.push_sql(&limit.to_string());
    }
    Ok(())
}

fn write_where<'b, DB>(select: &'b Select, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()>
where
    DB: Dialect,
    Bind: QueryFragment<DB>,
{
    if select.filter != Cond::True {
        out.push_sql(" WHERE ");
        write_cond(select.table.name, &select.filter, out)?;
    }
    Ok(())
}

fn write_order<DB: Dialect>(table: &str, order: &[OrderKey], out: &mut AstPass<'_, '_, DB>) -> QueryResult<()> {
    for (i, key) in order.iter().enumerate() {
        if i > 0 {
            out.push_sql(", ");
        }
        write_order_key(out, key, |out| push_column(out, table, key.column))?;
    }
    Ok(())
}

/// One key of an ordering, the column written by `column`: NULLs last ascending, first
/// descending, on both backends.
fn write_order_key<DB: Dialect>(
    out: &mut AstPass<'_, '_, DB>,
    key: &OrderKey,
    column: impl Fn(&mut AstPass<'_, '_, DB>) -> QueryResult<()>,
) -> QueryResult<()> {
    let direction = if key.desc { " DESC" } else { " ASC" };
    if key.nullable {
        out.push_sql("(");
        column(out)?;
        out.push_sql(" IS NULL)");
        out.push_sql(direction);
        out.push_sql(", ");
    }
    column(out)?;
    out.push_sql(direction);
    Ok(())
}

/// `table.col AS alias, …` for a [`Projection::Columns`].
fn write_columns<DB: Dialect>(table: &Table, columns: Columns, out: &mut AstPass<'_, '_, DB>) -> QueryResult<()> {
    for (n, index) in columns.indexes().enumerate() {
        if n > 0 {
            out.push_sql(", ");
        }
        push_column(out, table.name, table.columns[index].name)?;
        out.push_sql(" AS ");
        out.push_identifier(&column_alias(table, index))?;
    }
    Ok(())
}

/// The aliases of [`write_columns`], for an outer select.
fn write_aliases<DB: Dialect>(table: &Table, columns: Columns, out: &mut AstPass<'_, '_, DB>) -> QueryResult<()> {
    for (n, index) in columns.indexes().enumerate() {
        if n > 0 {
            out.push_sql(", ");
        }
        out.push_identifier(&column_alias(table, index))?;
    }
    Ok(())
}

/// A column by its alias in an outer select.
fn alias_of<DB: Dialect>(table: &Table, column: &str, out: &mut AstPass<'_, '_, DB>) -> QueryResult<()> {
    let index = table.columns.iter().position(|c| c.name == column).ok_or_else(|| {
        diesel::result::Error::QueryBuilderError(format!("no column `{column}` in `{}`", table.name).into())
    })?;
    out.push_identifier(&column_alias(table, index))
}

fn write_list<'b, DB, T>(
    items: &'b [T],
    separator: &str,
    out: &mut AstPass<'_, 'b, DB>,
    mut each: impl FnMut(&'b T, &mut AstPass<'_, 'b, DB>) -> QueryResult<()>,
) -> QueryResult<()>
where
    DB: Dialect,
{
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_sql(separator);
        }
        each(item, out)?;
    }
    Ok(())
}

fn write_cond<'b, DB>(table: &str, cond: &'b Cond, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()>
where
    DB: Dialect,
    Bind: QueryFragment<DB>,
{
    match cond {
        Cond::True => out.push_sql("1 = 1"),
        Cond::False => out.push_sql("1 = 0"),
        Cond::And(conds) | Cond::Or(conds) => {
            let separator = if matches!(cond, Cond::And(_)) { " AND " } else { " OR " };
            out.push_sql("(");
            write_list(conds, separator, out, |c, out| write_cond(table, c, out))?;
            out.push_sql(")");
        }
        Cond::Not(inner) => {
            out.push_sql("NOT (");
            write_cond(table, inner, out)?;
            out.push_sql(")");
        }
        Cond::Cmp(column, op, value) => {
            push_column(out, table, column)?;
            out.push_sql(op.sql());
            value.walk_ast(out.reborrow())?;
        }
        Cond::In(column, values) => {
            if values.is_empty() {
                out.push_sql("1 = 0");
            } else {
                push_column(out, table, column)?;
                out.push_sql(" IN (");
                write_list(values, ", ", out, |v, out| v.walk_ast(out.reborrow()))?;
                out.push_sql(")");
            }
        }
        Cond::InText(column, values) => {
            if values.is_empty() {
                out.push_sql("1 = 0");
            } else {
                DB::in_texts(out, table, column, values)?;
            }
        }
        Cond::IsNull(column, null) => {
            push_column(out, table, column)?;
            out.push_sql(if *null { " IS NULL" } else { " IS NOT NULL" });
        }
        Cond::Like { column, like, glob } => DB::like(out, table, column, like, glob)?,
        Cond::ILike(column, pattern) => {
            let (open, close) = DB::ASCII_LOWER;
            out.push_sql(open);
            push_column(out, table, column)?;
            out.push_sql(close);
            out.push_sql(" LIKE ");
            out.push_sql(open);
            pattern.walk_ast(out.reborrow())?;
            out.push_sql(close);
            out.push_sql(" ESCAPE '\\'");
        }
        Cond::JsonHasKey(column, key) => DB::json_has_key(out, table, column, key)?,
        Cond::JsonKeyEquals(column, key, value) => DB::json_key_equals(out, table, column, key, value)?,
        Cond::InSelect(column, select) => {
            push_column(out, table, column)?;
            out.push_sql(" IN (");
            write_select(select, out)?;
            out.push_sql(")");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_fits_a_column_set() {
        for table in crate::catalog::TABLES.iter() {
            assert!(table.columns.len() <= Columns::MAX, "{} has more columns than a `Columns` holds", table.name);
            let all = Columns::all(table);
            assert_eq!(all.indexes().count(), table.columns.len(), "{}", table.name);
            let last = table.columns.len() - 1;
            assert!(all.contains(last) && !all.contains(last + 1), "{}", table.name);
        }
    }
}
