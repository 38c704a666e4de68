//! Tenancy in one place: which rows of a table the caller may see, as a [`Cond`] that every
//! read adds to its query (root lists, `x(id)`, `node(id)`, parents, children, links).
//!
//! A member sees the rows of the workspaces they belong to: directly by `workspace_id`, or
//! through the parent chain the catalog names (`eval_executions` → `evals` → `agents` →
//! `workspaces`, as nested `IN (SELECT id …)` subqueries). Users see themselves and the
//! users sharing a workspace with them; API tokens are their owner's; `tools` are readable
//! by all; `eval_llm_cache` only under the admin secret, which sees everything. A row
//! outside the caller's scope is filtered out exactly like a missing one.

use crate::catalog::{self, Scope, Table};
use crate::models::WorkspaceMemberRole;
use crate::sql::{Bind, Cond, Select};

/// What the caller of a request may see.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Access {
    /// The admin secret: everything.
    Admin,
    /// A user and the workspaces where they are a member.
    Member {
        /// The user.
        user_id: String,
        /// Their workspaces.
        workspaces: Vec<String>,
        /// Their role in each of them (same order as `workspaces`).
        roles: Vec<WorkspaceMemberRole>,
    },
}

impl Access {
    /// The rows of `table` the caller may see.
    pub fn scope(&self, table: &'static Table) -> Cond {
        let Access::Member { workspaces, .. } = self else {
            return Cond::True;
        };
        self.scope_by(table, &|column| Cond::InText(column, workspaces.clone()))
    }

    /// [`Access::scope`], with the user's workspaces read by the statement itself
    /// (`workspace_id IN (SELECT workspace_id FROM workspace_members WHERE user_id = …)`)
    /// rather than taken from this access: what a running subscription reads each event
    /// with, so a member removed since it started sees nothing more, even before the
    /// connection has re-checked its access.
    pub fn live_scope(&self, table: &'static Table) -> Cond {
        let Access::Member { user_id, .. } = self else {
            return Cond::True;
        };
        let members = catalog::table("workspace_members").expect("workspace_members is in the catalog");
        let mut memberships =
            Select::ids(members, Cond::Cmp("user_id", crate::sql::CmpOp::Eq, Bind::Text(user_id.clone())));
        memberships.projection = crate::sql::Projection::Column("workspace_id");
        self.scope_by(table, &|column| Cond::InSelect(column, Box::new(memberships.clone())))
    }

    /// The scope of a member whose workspaces `in_workspaces(column)` names.
    fn scope_by(&self, table: &'static Table, in_workspaces: &dyn Fn(&'static str) -> Cond) -> Cond {
        let Access::Member { user_id, .. } = self else {
            return Cond::True;
        };
        match table.scope {
            Scope::Tenant => in_workspaces("id"),
            Scope::Workspace(column) => in_workspaces(column),
            Scope::Parent { column, table: parent } => match catalog::table(parent) {
                Some(parent) => {
                    Cond::InSelect(column, Box::new(Select::ids(parent, self.scope_by(parent, in_workspaces))))
                }
                None => Cond::False,
            },
            Scope::User(column) => Cond::Cmp(column, crate::sql::CmpOp::Eq, Bind::Text(user_id.clone())),
            Scope::SharedUsers => {
                let members = catalog::table("workspace_members").expect("workspace_members is in the catalog");
                let mut co_members = Select::ids(members, in_workspaces("workspace_id"));
                co_members.projection = crate::sql::Projection::Column("user_id");
                Cond::any(vec![
                    Cond::Cmp("id", crate::sql::CmpOp::Eq, Bind::Text(user_id.clone())),
                    Cond::InSelect("id", Box::new(co_members)),
                ])
            }
            Scope::Global => Cond::True,
            Scope::AdminOnly => Cond::False,
        }
    }

    /// The rows of `table` that belong to workspace `workspace_id` and that the caller may
    /// see (root lists take a `workspaceId`). A workspace the caller is not a member of has
    /// no visible rows.
    pub fn in_workspace(&self, table: &'static Table, workspace_id: &str) -> Cond {
        if let Access::Member { workspaces, .. } = self {
            if !workspaces.iter().any(|w| w == workspace_id) {
                return Cond::False;
            }
        }
        pinned(table, workspace_id)
    }

    /// The caller's role in a workspace: `Owner` for the admin secret, `None` for a
    /// workspace the caller is not a member of.
    pub fn role(&self, workspace_id: &str) -> Option<WorkspaceMemberRole> {
        match self {
            Access::Admin => Some(WorkspaceMemberRole::Owner),
            Access::Member { workspaces, roles, .. } => {
                workspaces.iter().position(|w| w == workspace_id).and_then(|i| roles.get(i).copied())
            }
        }
    }

    /// The user, if the caller is one.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Access::Member { user_id, .. } => Some(user_id),
            Access::Admin => None,
        }
    }
}

/// The caller's access over a WebSocket, kept current while the connection is open
/// ([`crate::server::ws`]): re-checked at every operation, when the bus announces a change
/// of the caller's credentials or memberships, when the token expires, and periodically.
/// `None` once the credential is gone (revoked, expired, its user deleted): the connection
/// then closes. Running subscriptions watch it ([`crate::graphql::subscriptions`]).
#[derive(Clone)]
pub struct LiveAccess(pub tokio::sync::watch::Receiver<Option<std::sync::Arc<Access>>>);

/// The rows of `table` in one workspace, following the scope chain.
fn pinned(table: &'static Table, workspace_id: &str) -> Cond {
    let workspace = || Bind::Text(workspace_id.to_owned());
    match table.scope {
        Scope::Tenant => Cond::Cmp("id", crate::sql::CmpOp::Eq, workspace()),
        Scope::Workspace(column) => Cond::Cmp(column, crate::sql::CmpOp::Eq, workspace()),
        Scope::Parent { column, table: parent } => match catalog::table(parent) {
            Some(parent) => Cond::InSelect(column, Box::new(Select::ids(parent, pinned(parent, workspace_id)))),
            None => Cond::False,
        },
        // Not workspace data: their lists take no workspace.
        Scope::User(_) | Scope::SharedUsers | Scope::Global | Scope::AdminOnly => Cond::True,
    }
}

/// Whether a table's lists are per workspace (`xs(workspaceId: ID!, …)`).
pub fn has_workspace_lists(table: &Table) -> bool {
    matches!(table.scope, Scope::Workspace(_) | Scope::Parent { .. })
}
