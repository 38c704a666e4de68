//! Which columns a query needs: from the selection of an object (its column fields, the
//! keys of the parents it selects, its id) or of a connection (its `nodes` and
//! `edges { node }`, the order's keys for cursors), so that a read fetches those and no
//! other. A connection whose selection has no `nodes`, `edges` or `pageInfo` needs no rows
//! at all (`totalCount`, `aggregate` are counted apart).

use std::collections::HashMap;
use std::sync::OnceLock;

use async_graphql::SelectionField;

use crate::catalog::{self, Table};
use crate::graphql::names;
use crate::sql::{Columns, OrderKey};

/// Per table, per object field name: the columns the field reads.
fn fields() -> &'static HashMap<&'static str, HashMap<String, Columns>> {
    static FIELDS: OnceLock<HashMap<&'static str, HashMap<String, Columns>>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let mut out: HashMap<&'static str, HashMap<String, Columns>> = HashMap::new();
        for table in catalog::TABLES.iter() {
            let of_table = out.entry(table.name).or_default();
            for (index, column) in table.columns.iter().enumerate() {
                if !names::is_secret(column) {
                    of_table.insert(names::column_field(column), Columns::none().with_index(index));
                }
            }
        }
        for relation in names::relations() {
            let key = Columns::none().with(relation.child, relation.column.name);
            out.entry(relation.child.name).or_default().insert(relation.parent_field.clone(), key);
        }
        out
    })
}

/// The columns of `table` that an object selection reads, and its id.
pub fn of_object<'a>(table: &'static Table, selection: impl Iterator<Item = SelectionField<'a>>) -> Columns {
    let known = fields().get(table.name);
    let mut columns = Columns::none().with(table, "id");
    for field in selection {
        if let Some(used) = known.and_then(|k| k.get(field.name())) {
            columns = columns.union(*used);
        }
    }
    columns
}

/// What a connection selection needs: the columns of its rows (the order's keys included,
/// for cursors), and whether it needs rows at all.
pub fn of_connection(table: &'static Table, connection: SelectionField<'_>, order: &[OrderKey]) -> (Columns, bool) {
    let mut columns = Columns::none().with(table, "id");
    let mut rows = false;
    for field in connection.selection_set() {
        match field.name() {
            "nodes" => {
                rows = true;
                columns = columns.union(of_object(table, field.selection_set()));
            }
            "edges" => {
                rows = true;
                for inner in field.selection_set().filter(|f| f.name() == "node") {
                    columns = columns.union(of_object(table, inner.selection_set()));
                }
            }
            "pageInfo" => rows = true,
            _ => {}
        }
    }
    for key in order {
        columns = columns.with(table, key.column);
    }
    (columns, rows)
}
