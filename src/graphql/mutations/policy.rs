//! What the API may write, per table, as data: which generic mutations exist and who may
//! run them, which columns are inputs of a create and fields of a patch, the JSON shapes
//! and text limits of the model, and the references that must stay inside one parent.
//!
//! The generic mutations read everything table-specific from here; the few rules that are
//! computations rather than data (counters, content hashes, graph checks, transitions) live
//! in [`super::rules`].

use crate::catalog::{Column, Kind, Scope, Table};
use crate::models::WorkspaceMemberRole;

/// Who may run a mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// A member of the row's workspace with at least this role (the admin secret always).
    Role(WorkspaceMemberRole),
    /// Only the server admin secret.
    Server,
    /// The user the row is (`users`), or the admin secret.
    SelfUser,
    /// Any authenticated caller (`createWorkspace`).
    Anyone,
}

const MEMBER: Who = Who::Role(WorkspaceMemberRole::Member);
const ADMIN: Who = Who::Role(WorkspaceMemberRole::Admin);
const OWNER: Who = Who::Role(WorkspaceMemberRole::Owner);

/// The generic mutations of a table and their rules.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// `create<Type>`, and who may run it.
    pub create: Option<Who>,
    /// `update<Type>`.
    pub update: Option<Who>,
    /// `delete<Type>`.
    pub delete: Option<Who>,
    /// Columns the server sets: never inputs of a create nor fields of a patch.
    pub server_set: &'static [&'static str],
    /// Columns a create takes but a patch never changes.
    pub frozen: &'static [&'static str],
    /// When set, the only columns a patch may change.
    pub patch_only: Option<&'static [&'static str]>,
}

const GENERIC: Policy = Policy {
    create: Some(MEMBER),
    update: Some(MEMBER),
    delete: Some(MEMBER),
    server_set: &[],
    frozen: &[],
    patch_only: None,
};

/// Created and deleted, never updated (the model's append-only tables and link rows).
const APPEND_ONLY: Policy = Policy { update: None, ..GENERIC };

/// The generic mutations of `table` (`api.md`, "Mutations").
pub fn policy(table: &Table) -> Policy {
    if table.view {
        return Policy { create: None, update: None, delete: None, ..GENERIC };
    }
    let base = if table.append_only { APPEND_ONLY } else { GENERIC };
    match table.name {
        "users" => {
            Policy { create: Some(Who::Server), update: Some(Who::SelfUser), delete: Some(Who::SelfUser), ..base }
        }
        "workspaces" => Policy {
            create: Some(Who::Anyone),
            update: Some(ADMIN),
            delete: Some(OWNER),
            server_set: &["user_id"],
            ..base
        },
        // Written by addWorkspaceMember / createApiToken and their companions only.
        "workspace_members" | "api_tokens" | "job_retry_history" => {
            Policy { create: None, update: None, delete: None, ..base }
        }
        "integrations" => Policy {
            create: Some(ADMIN),
            update: Some(ADMIN),
            delete: Some(ADMIN),
            // Replaced by the plain-text `apiKey` input, sealed by the server.
            server_set: &["api_key_encrypted"],
            ..base
        },
        "traces" => Policy {
            server_set: &["input_preview", "output_preview", "step_count", "has_errors", "imported_at"],
            patch_only: Some(&["assignment_status", "agent_version_id", "system_prompt_id", "metadata"]),
            ..base
        },
        // Written by rateTrace (its workspace is the trace's); updated and deleted generically.
        "feedback" => Policy { create: None, server_set: &["workspace_id"], frozen: &["trace_id"], ..base },
        "agents" => Policy { server_set: &["active_version_id", "active_eval_id"], ..base },
        "agent_versions" => Policy { server_set: &["status"], frozen: &["version"], ..base },
        "agent_functions" => APPEND_ONLY,
        "tools" | "eval_llm_cache" => {
            Policy { create: Some(Who::Server), update: Some(Who::Server), delete: Some(Who::Server), ..base }
        }
        "evals" => Policy {
            server_set: &["execution_count", "contradiction_count", "activated_at"],
            frozen: &["version"],
            ..base
        },
        "jobs" => Policy {
            server_set: &[
                "status",
                "progress",
                "result",
                "error",
                "error_category",
                "retry_count",
                "last_error_at",
                "next_retry_at",
                "started_at",
                "completed_at",
            ],
            frozen: &["max_retries"],
            ..base
        },
        "performance_alerts" => {
            Policy { server_set: &["acknowledged_at", "acknowledged_by", "resolved_at", "resolved_by"], ..base }
        }
        "taskset_tasks" => Policy { server_set: &["content_hash"], ..base },
        // Created by startExecution (with its steps); its input data and its result are
        // patched; its status moves along its steps and pause/resume/cancelExecution.
        "executions" => Policy { create: None, patch_only: Some(&["data", "result"]), ..base },
        // Created by startExecution; patched along its transitions.
        "execution_steps" => Policy {
            create: None,
            delete: None,
            patch_only: Some(&["status", "input", "output", "validation", "error"]),
            ..base
        },
        _ => base,
    }
}

/// Columns of a patch only the server admin may change: a user's `email` (a self-service
/// change would let anyone claim an address they cannot prove is theirs, and receive what
/// is meant for it, such as `addWorkspaceMember(email:)`).
pub fn admin_only_patch_columns(table: &Table) -> &'static [&'static str] {
    match table.name {
        "users" => &["email"],
        _ => &[],
    }
}

/// The column that names a row's scope parent (its workspace or parent row), if any.
pub fn scope_column(table: &Table) -> Option<&'static str> {
    match table.scope {
        Scope::Workspace(column) | Scope::Parent { column, .. } | Scope::User(column) => Some(column),
        Scope::Tenant | Scope::SharedUsers | Scope::Global | Scope::AdminOnly => None,
    }
}

fn always_server(column: &Column) -> bool {
    matches!(column.kind, Kind::Id) || matches!(column.name, "created_at" | "updated_at")
}

/// The columns a create takes, in catalog order.
pub fn create_columns(table: &'static Table) -> Vec<&'static Column> {
    let policy = policy(table);
    table.columns.iter().filter(|c| !always_server(c) && !policy.server_set.contains(&c.name)).collect()
}

/// The columns a patch may change, in catalog order.
pub fn patch_columns(table: &'static Table) -> Vec<&'static Column> {
    let policy = policy(table);
    let scope = scope_column(table);
    table
        .columns
        .iter()
        .filter(|c| !always_server(c) && Some(c.name) != scope)
        .filter(|c| !policy.server_set.contains(&c.name) && !policy.frozen.contains(&c.name))
        .filter(|c| policy.patch_only.is_none_or(|only| only.contains(&c.name)))
        .collect()
}

/// Whether a create may leave out this non-null column without a database default:
/// the server fills it (a timestamp with the current time, a version with the next one).
pub fn server_default(table: &Table, column: &Column) -> bool {
    column.kind == Kind::Timestamp || (column.name == "version" && matches!(table.name, "evals" | "agent_versions"))
}

/// Whether a create input must give the column.
pub fn required_on_create(table: &Table, column: &Column) -> bool {
    !column.nullable && !column.has_default && !server_default(table, column)
}

/// The JSON shapes the model fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Any JSON value.
    Any,
    /// An object.
    Object,
    /// An array.
    Array,
    /// An array of objects.
    ArrayOfObjects,
    /// Trace steps: an array of objects whose documented fields, where present, have their
    /// types: `step_id` a string, `timestamp` an RFC 3339 date-time, `messages_added` an
    /// array, `tool_calls` an array of objects, `metadata` an object (`input`, `output`:
    /// any value; `error`: a string or null).
    Steps,
    /// An array of strings.
    ArrayOfStrings,
    /// Workflow nodes: an array of `{id, type, data}` with distinct string ids.
    Nodes,
    /// Workflow edges: an array of `{id, source, target}` naming nodes.
    Edges,
}

/// The shape of a JSON column's values.
pub fn shape(table: &Table, column: &Column) -> Shape {
    match (table.name, column.name) {
        ("traces", "steps") => Shape::Steps,
        ("trace_summaries", "key_behaviors")
        | ("task_metadata", "success_criteria")
        | ("evals", "training_trace_ids") => Shape::ArrayOfStrings,
        ("evals", "per_trace_results") | ("eval_cv_results", "fold_results") | ("playground_sessions", "messages") => {
            Shape::Array
        }
        ("tools", "parameters_schema")
        | ("playground_sessions", "variables" | "files")
        | ("taskset_runs" | "rollout_batches", "config") => Shape::Object,
        ("workflows", "nodes") => Shape::Nodes,
        ("workflows", "edges") => Shape::Edges,
        _ => Shape::Any,
    }
}

/// Names and labels: at most this many characters.
pub const MAX_LABEL_CHARS: usize = crate::validate::MAX_NAME_CHARS;
/// Emails: at most this many characters.
pub const MAX_EMAIL_CHARS: usize = crate::validate::MAX_EMAIL_CHARS;
/// Other text: at most this many bytes (1 MiB).
pub const MAX_TEXT_BYTES: usize = 1 << 20;
/// A JSON value: at most this many bytes of JSON text (8 MiB).
pub const MAX_JSON_BYTES: usize = 8 << 20;
/// Rows one bulk mutation takes at most.
pub const MAX_BULK: usize = 1_000;

/// Text columns that hold names, labels or keys (short, often indexed).
const LABELS: &[&str] = &[
    "trace_id",
    "prompt_hash",
    "model",
    "model_id",
    "model_used",
    "model_provider",
    "variation",
    "node_id",
    "task_id",
    "handler_key",
    "error_category",
    "task_type",
    "domain",
    "trigger_event",
    "trigger_threshold",
];

/// How long a text column's values may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextLimit {
    /// At most this many characters.
    Chars(usize),
    /// At most this many bytes.
    Bytes(usize),
}

/// The limit of a text column.
pub fn text_limit(table: &Table, column: &Column) -> TextLimit {
    let in_unique_key = table.unique_keys.iter().any(|key| key.contains(&column.name));
    if column.name == "email" {
        TextLimit::Chars(MAX_EMAIL_CHARS)
    } else if column.name == "name"
        || column.name.ends_with("_name")
        || LABELS.contains(&column.name)
        || in_unique_key
        || column.references.is_some()
    {
        TextLimit::Chars(MAX_LABEL_CHARS)
    } else {
        TextLimit::Bytes(MAX_TEXT_BYTES)
    }
}

/// A reference that must name a row of the same parent as the row itself: the referenced
/// row's `their` column equals the row's `ours` column (a version *of this agent*).
#[derive(Debug, Clone, Copy)]
pub struct SameParent {
    /// The table.
    pub table: &'static str,
    /// The reference column.
    pub column: &'static str,
    /// The column of the referenced row.
    pub their: &'static str,
    /// The column of this row it must equal.
    pub ours: &'static str,
    /// What the rule says, for the error.
    pub rule: &'static str,
}

/// References that must stay inside one agent (or taskset).
pub const SAME_PARENT: &[SameParent] = &[
    SameParent {
        table: "agent_versions",
        column: "parent_version_id",
        their: "agent_id",
        ours: "agent_id",
        rule: "a version of the same agent",
    },
    SameParent {
        table: "evals",
        column: "parent_eval_id",
        their: "agent_id",
        ours: "agent_id",
        rule: "an eval of the same agent",
    },
    SameParent {
        table: "playground_sessions",
        column: "agent_version_id",
        their: "agent_id",
        ours: "agent_id",
        rule: "a version of the session's agent",
    },
    SameParent {
        table: "jobs",
        column: "agent_version_id",
        their: "agent_id",
        ours: "agent_id",
        rule: "a version of the job's agent",
    },
    SameParent {
        table: "gepa_runs",
        column: "optimized_version_id",
        their: "agent_id",
        ours: "agent_id",
        rule: "a version of the run's agent",
    },
    SameParent {
        table: "gepa_runs",
        column: "eval_id",
        their: "agent_id",
        ours: "agent_id",
        rule: "an eval of the run's agent",
    },
    SameParent {
        table: "taskset_runs",
        column: "taskset_id",
        their: "agent_id",
        ours: "agent_id",
        rule: "a taskset of the run's agent",
    },
];

/// `a Trace`, `an Eval`: the type name with its article.
pub fn a(type_name: &str) -> String {
    let article = if type_name.starts_with(['A', 'E', 'I', 'O']) { "an" } else { "a" };
    format!("{article} {type_name}")
}

/// How roles rank: viewer < member < admin < owner.
pub fn rank(role: WorkspaceMemberRole) -> u8 {
    match role {
        WorkspaceMemberRole::Viewer => 0,
        WorkspaceMemberRole::Member => 1,
        WorkspaceMemberRole::Admin => 2,
        WorkspaceMemberRole::Owner => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    #[test]
    fn policies_name_real_columns() {
        for table in catalog::tables() {
            let p = policy(table);
            for name in p.server_set.iter().chain(p.frozen).chain(p.patch_only.unwrap_or_default()) {
                assert!(table.column(name).is_some(), "{}.{name}", table.name);
            }
            if table.append_only {
                assert!(p.update.is_none(), "{} is append-only", table.name);
            }
            for column in create_columns(table) {
                assert!(column.kind != Kind::Id && column.name != "created_at");
            }
            assert!(patch_columns(table).iter().all(|c| Some(c.name) != scope_column(table)));
        }
        for rule in SAME_PARENT {
            let table = catalog::table(rule.table).unwrap();
            let column = table.column(rule.column).unwrap();
            let target = catalog::table(column.references.unwrap().table).unwrap();
            assert!(target.column(rule.their).is_some() && table.column(rule.ours).is_some());
        }
        assert_eq!(
            text_limit(
                catalog::table("traces").unwrap(),
                catalog::table("traces").unwrap().column("trace_id").unwrap()
            ),
            TextLimit::Chars(200)
        );
    }
}
