//! The generic create, update and delete of any table, inside one transaction: who may
//! (the row's workspace and the caller's role there), what it may reference (rows of the
//! same workspace), the table's rules ([`super::rules`]), then the write.

use serde_json::{Map, Value};

use super::policy::{self, rank, scope_column, Who, SAME_PARENT};
use super::rules;
use super::store::{eq, Lock, Stmt, Tx};
use crate::catalog::{self, Scope, Table};
use crate::error::{AppError, AppResult};
use crate::graphql::access::Access;
use crate::graphql::names;
use crate::graphql::records::Record;
use crate::models::WorkspaceMemberRole;
use crate::sql::Cond;

/// `NOT_FOUND` for a row of `table` that does not exist or is not the caller's.
pub fn not_found(table: &Table, id: &str) -> AppError {
    AppError::NotFound(format!("no {} with id `{id}`", table.type_name))
}

/// `NOT_FOUND` for a reference named by an input field.
pub fn reference_not_found(table: &Table, field: &str, id: &str) -> AppError {
    AppError::NotFound(format!("`{field}`: no {} with id `{id}`", table.type_name))
}

/// The caller must be the server admin.
pub fn require_admin(access: &Access) -> AppResult<()> {
    match access {
        Access::Admin => Ok(()),
        Access::Member { .. } => Err(AppError::Forbidden("only the server admin secret may do this".into())),
    }
}

/// The caller must hold at least `min` in the workspace: `NOT_FOUND` when they are not a
/// member (the workspace's rows do not exist for them), `FORBIDDEN` when the role is lower.
pub fn require_role(access: &Access, workspace_id: &str, min: WorkspaceMemberRole, what: &str) -> AppResult<()> {
    match access.role(workspace_id) {
        None => Err(AppError::NotFound(format!("no Workspace with id `{workspace_id}`"))),
        Some(role) if rank(role) < rank(min) => Err(AppError::Forbidden(format!(
            "{what} needs the `{}` role in the workspace (you are `{}`)",
            min.as_str(),
            role.as_str()
        ))),
        Some(_) => Ok(()),
    }
}

/// The query for the workspace of the row of `table` whose id `id` selects, following the
/// scope chain (`None` for rows outside workspaces).
fn workspace_query(table: &'static Table, id: Stmt) -> Option<Stmt> {
    let select = |column: &'static str, from: &'static str| {
        Stmt::new()
            .sql("SELECT ")
            .ident(column)
            .sql(" FROM ")
            .ident(from)
            .sql(" WHERE ")
            .ident("id")
            .sql(" = (")
            .append(id.clone())
            .sql(")")
    };
    match table.scope {
        Scope::Tenant => Some(select("id", "workspaces")),
        Scope::Workspace(column) => Some(select(column, table.name)),
        Scope::Parent { column, table: parent } => workspace_query(catalog::table(parent)?, select(column, table.name)),
        Scope::User(_) | Scope::SharedUsers | Scope::Global | Scope::AdminOnly => None,
    }
}

/// The workspace of the row of `table` with this id, if the row exists and belongs to one.
pub async fn workspace_of_id(tx: &mut Tx<'_>, table: &'static Table, id: &str) -> AppResult<Option<String>> {
    let Some(query) = workspace_query(table, Stmt::new().text(id)) else {
        return Ok(None);
    };
    let found = tx.texts(Stmt::new().sql("SELECT (").append(query).sql(") AS v")).await?;
    Ok(found.into_iter().next().flatten())
}

/// The workspace a row belongs to.
pub async fn workspace_of(tx: &mut Tx<'_>, table: &'static Table, row: &Record) -> AppResult<Option<String>> {
    match table.scope {
        Scope::Tenant => Ok(Some(row.id().to_owned())),
        Scope::Workspace(column) => Ok(row.text(column).map(str::to_owned)),
        Scope::Parent { column, table: parent } => match (catalog::table(parent), row.text(column)) {
            (Some(parent), Some(parent_id)) => workspace_of_id(tx, parent, parent_id).await,
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// The workspace a new row goes into, from its scope key: `NOT_FOUND` when the parent does
/// not exist or the caller is not a member of its workspace.
async fn workspace_of_new(tx: &mut Tx<'_>, table: &'static Table, row: &Map<String, Value>) -> AppResult<String> {
    let column = scope_column(table).ok_or_else(|| AppError::internal(format!("{} has no scope", table.name)))?;
    let key = row.get(column).and_then(Value::as_str).unwrap_or_default().to_owned();
    let field = names::camel(column);
    let parent = match table.scope {
        Scope::Workspace(_) => catalog::table("workspaces"),
        Scope::Parent { table: parent, .. } => catalog::table(parent),
        _ => None,
    }
    .ok_or_else(|| AppError::internal(format!("{} has no parent table", table.name)))?;
    workspace_of_id(tx, parent, &key).await?.ok_or_else(|| reference_not_found(parent, &field, &key))
}

/// Authorizes a create; returns the new row's workspace (none for global rows).
pub async fn authorize_create(
    tx: &mut Tx<'_>,
    access: &Access,
    table: &'static Table,
    row: &Map<String, Value>,
    who: Who,
) -> AppResult<Option<String>> {
    match who {
        Who::Server => require_admin(access).map(|_| None),
        Who::Anyone | Who::SelfUser => Ok(None),
        Who::Role(min) => {
            let workspace = workspace_of_new(tx, table, row).await?;
            if access.role(&workspace).is_none() {
                let column = scope_column(table).unwrap_or("id");
                let key = row.get(column).and_then(Value::as_str).unwrap_or_default();
                let parent = match table.scope {
                    Scope::Parent { table: parent, .. } => catalog::table(parent).unwrap_or(table),
                    _ => catalog::table("workspaces").unwrap_or(table),
                };
                return Err(reference_not_found(parent, &names::camel(column), key));
            }
            require_role(access, &workspace, min, &format!("creating {}", policy::a(table.type_name)))?;
            Ok(Some(workspace))
        }
    }
}

/// Whether the caller holds at least `min` in every workspace whose rows they see (the
/// admin secret: everywhere). A visible row is then theirs to change whichever workspace it
/// is in, and its workspace need not be looked up.
fn role_everywhere(access: &Access, min: WorkspaceMemberRole) -> bool {
    match access {
        Access::Admin => true,
        Access::Member { workspaces, roles, .. } => {
            roles.len() == workspaces.len() && roles.iter().all(|role| rank(*role) >= rank(min))
        }
    }
}

/// Authorizes a change to an existing (visible) row; returns its workspace when
/// `need_workspace` (or when it had to be looked up anyway to check the role).
pub async fn authorize_existing(
    tx: &mut Tx<'_>,
    access: &Access,
    table: &'static Table,
    row: &Record,
    who: Who,
    what: &str,
    need_workspace: bool,
) -> AppResult<Option<String>> {
    if let Who::Role(min) = who {
        if !need_workspace && role_everywhere(access, min) {
            return Ok(None);
        }
    }
    match who {
        Who::Server => require_admin(access).map(|_| None),
        Who::Anyone => Ok(None),
        Who::SelfUser => match access {
            Access::Admin => Ok(None),
            Access::Member { user_id, .. } if row.id() == user_id => Ok(None),
            Access::Member { .. } => Err(AppError::Forbidden(format!("{what}: only the user themself may do this"))),
        },
        Who::Role(min) => {
            let workspace = workspace_of(tx, table, row).await?.ok_or_else(|| not_found(table, row.id()))?;
            require_role(access, &workspace, min, what)?;
            Ok(Some(workspace))
        }
    }
}

/// Checks the references a create or change sets (`changes`), other than the scope key and a
/// parent whose workspace the row carries (its creator found the workspace through it): each
/// must name a row the caller may see in the row's workspace (`NOT_FOUND` otherwise, as for a
/// missing row; a user must be a member of it), and those that must stay inside one agent do.
/// `merged` is the row as it will be.
pub async fn check_references(
    tx: &mut Tx<'_>,
    access: &Access,
    table: &'static Table,
    workspace: Option<&str>,
    changes: &Map<String, Value>,
    merged: &Map<String, Value>,
) -> AppResult<()> {
    let scope = scope_column(table);
    for (column, fk) in table.foreign_keys() {
        // The row's workspace is that parent's: its creator found the workspace through it.
        if Some(column.name) == scope || column.parent_in_workspace {
            continue;
        }
        let Some(id) = changes.get(column.name).and_then(Value::as_str) else {
            continue;
        };
        let field = names::column_field(column);
        let target = catalog::table(fk.table).ok_or_else(|| AppError::internal("an unknown referenced table"))?;
        let found = match (target.scope, workspace) {
            (Scope::SharedUsers, Some(workspace)) => {
                let members = catalog::table("workspace_members").ok_or_else(|| AppError::internal("no members"))?;
                tx.count_rows(members, Cond::all(vec![eq("workspace_id", workspace), eq("user_id", id)])).await?
            }
            (Scope::Global | Scope::SharedUsers, _) | (_, None) => {
                tx.count_rows(target, Cond::all(vec![eq("id", id), access.scope(target)])).await?
            }
            (_, Some(workspace)) => {
                tx.count_rows(target, Cond::all(vec![eq("id", id), access.in_workspace(target, workspace)])).await?
            }
        };
        if found == 0 {
            return Err(reference_not_found(target, &field, id));
        }
    }
    for rule in SAME_PARENT.iter().filter(|r| r.table == table.name) {
        if !changes.contains_key(rule.column) && !changes.contains_key(rule.ours) {
            continue;
        }
        let (Some(id), Some(ours)) =
            (merged.get(rule.column).and_then(Value::as_str), merged.get(rule.ours).and_then(Value::as_str))
        else {
            continue;
        };
        let target = table
            .column(rule.column)
            .and_then(|c| c.references)
            .and_then(|fk| catalog::table(fk.table))
            .ok_or_else(|| AppError::internal("a same-parent rule on a column that is no reference"))?;
        let their = tx
            .texts(
                Stmt::new()
                    .sql("SELECT ")
                    .ident(rule.their)
                    .sql(" AS v FROM ")
                    .ident(target.name)
                    .sql(" WHERE ")
                    .ident("id")
                    .sql(" = ")
                    .text(id),
            )
            .await?;
        if their.into_iter().next().flatten().as_deref() != Some(ours) {
            let field = names::camel(rule.column);
            return Err(AppError::bad_input(&field, format!("`{field}` must name {}", rule.rule)));
        }
    }
    Ok(())
}

/// Creates a row from checked input values.
pub async fn create(
    tx: &mut Tx<'_>,
    access: &Access,
    table: &'static Table,
    mut row: Map<String, Value>,
) -> AppResult<Record> {
    let who = policy::policy(table).create.ok_or_else(|| AppError::internal("no generic create"))?;
    let workspace = authorize_create(tx, access, table, &row, who).await?;
    insert_checked(tx, access, table, workspace.as_deref(), &mut row).await?;
    let id = row.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    reload(tx, table, &id).await
}

/// The part of a create after authorization: references, the table's rules, the insert and
/// what follows it. Sets `row["id"]`.
pub async fn insert_checked(
    tx: &mut Tx<'_>,
    access: &Access,
    table: &'static Table,
    workspace: Option<&str>,
    row: &mut Map<String, Value>,
) -> AppResult<()> {
    // A row that carries its parent's workspace gets it here, whatever was sent.
    if let (Scope::Workspace(column), Some(workspace)) = (table.scope, workspace) {
        if table.columns.iter().any(|c| c.parent_in_workspace) {
            row.insert(column.into(), Value::String(workspace.to_owned()));
        }
    }
    let changes = row.clone();
    check_references(tx, access, table, workspace, &changes, row).await?;
    rules::before_create(tx, access, table, row).await?;
    rules::check_row(table, row, row)?;
    let id = tx.insert(table, row).await?;
    row.insert("id".into(), Value::String(id.clone()));
    rules::after_create(tx, access, table, &id, row).await
}

/// Loads a row just written.
pub async fn reload(tx: &mut Tx<'_>, table: &'static Table, id: &str) -> AppResult<Record> {
    tx.find(table, id, Cond::True).await?.ok_or_else(|| AppError::internal(format!("{} {id} vanished", table.name)))
}

/// The visible row of `table` with this id, or `NOT_FOUND`; locked until the transaction
/// ends ([`Tx::find_locked`]), so it is read as the last writer left it and no one else
/// changes it meanwhile. Writers of other rows, in the same workspace or not, never wait.
pub async fn visible(tx: &mut Tx<'_>, access: &Access, table: &'static Table, id: &str) -> AppResult<Record> {
    visible_locked(tx, access, table, id, Some(Lock::NoKeyUpdate)).await
}

/// [`visible`] with the row lock of the given strength, or none (for a row whose lock the
/// transaction takes later, in the order the locking rules say).
pub async fn visible_locked(
    tx: &mut Tx<'_>,
    access: &Access,
    table: &'static Table,
    id: &str,
    strength: Option<Lock>,
) -> AppResult<Record> {
    if catalog::table_of_id(id).map(|t| t.name) != Some(table.name) {
        return Err(not_found(table, id));
    }
    let found = match strength {
        Some(strength) => tx.find_locked(table, id, access.scope(table), strength).await?,
        None => tx.find(table, id, access.scope(table)).await?,
    };
    found.ok_or_else(|| not_found(table, id))
}

/// Applies checked changes to a row.
pub async fn update(
    tx: &mut Tx<'_>,
    access: &Access,
    table: &'static Table,
    id: &str,
    mut changes: Map<String, Value>,
) -> AppResult<Record> {
    let who = policy::policy(table).update.ok_or_else(|| AppError::internal("no generic update"))?;
    if who == Who::Server {
        require_admin(access)?;
    }
    let old = visible(tx, access, table, id).await?;
    // The workspace is needed to check references the change sets (other than the scope).
    let scope = scope_column(table);
    let sets_reference =
        table.foreign_keys().any(|(column, _)| Some(column.name) != scope && changes.contains_key(column.name));
    let what = format!("updating {}", policy::a(table.type_name));
    let workspace = authorize_existing(tx, access, table, &old, who, &what, sets_reference).await?;
    let mut merged = old.to_map();
    merged.extend(changes.clone());
    check_references(tx, access, table, workspace.as_deref(), &changes, &merged).await?;
    rules::before_update(tx, access, table, &old, &mut changes).await?;
    let mut merged = old.to_map();
    merged.extend(changes.clone());
    rules::check_row(table, &changes, &merged)?;
    apply(tx, access, table, &old, &changes).await
}

/// Writes changes to a row that passed every check, runs what follows, and reloads it.
pub async fn apply(
    tx: &mut Tx<'_>,
    access: &Access,
    table: &'static Table,
    old: &Record,
    changes: &Map<String, Value>,
) -> AppResult<Record> {
    let changed = changes.iter().any(|(k, v)| old.get(k) != v);
    if !changed {
        return Ok(old.clone());
    }
    let new = tx
        .update_returning(table, old, changes)
        .await?
        .ok_or_else(|| AppError::internal(format!("{} {} vanished", table.name, old.id())))?;
    rules::after_update(tx, access, table, old, changes).await?;
    Ok(new)
}

/// Deletes a row.
pub async fn delete(tx: &mut Tx<'_>, access: &Access, table: &'static Table, id: &str) -> AppResult<String> {
    let who = policy::policy(table).delete.ok_or_else(|| AppError::internal("no generic delete"))?;
    if who == Who::Server {
        require_admin(access)?;
    }
    let old = visible(tx, access, table, id).await?;
    authorize_existing(tx, access, table, &old, who, &format!("deleting {}", policy::a(table.type_name)), false)
        .await?;
    let affected = rules::before_delete(tx, table, &old).await?;
    tx.delete(table, old.id()).await?;
    rules::after_delete(tx, affected).await?;
    Ok(old.id().to_owned())
}
