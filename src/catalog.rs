//! The data model as data: every table and the view, with their columns, kinds, foreign
//! keys (and ON DELETE rules), checks, unique keys and scopes.
//!
//! Code that must visit every table reads it from here (tenancy, `node(id)`, and the tests
//! that hold the migrations of both backends and the Diesel schema to the model), so a new
//! table is added in one list. Enum values come from the enums in [`crate::models`].

/// How a column's values are typed in the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// The primary key: text, `<prefix>_<uuid v7>`.
    Id,
    /// Text (foreign keys included).
    Text,
    /// A 64-bit integer.
    Int,
    /// A double-precision number.
    Real,
    /// A boolean.
    Bool,
    /// Any JSON value.
    Json,
    /// A UTC timestamp with microseconds.
    Timestamp,
    /// A calendar date as text, `YYYY-MM-DD`.
    Date,
    /// Text restricted to these values.
    Enum(&'static [&'static str]),
}

/// What deleting the referenced row does to the referencing row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    /// The referencing row is deleted too.
    Cascade,
    /// The key is set to NULL.
    SetNull,
}

/// A foreign key: the referenced table (always its `id`) and the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignKey {
    /// The referenced table.
    pub table: &'static str,
    /// The ON DELETE rule.
    pub on_delete: OnDelete,
}

/// A column of the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    /// The column's name.
    pub name: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Whether the database has a default for it.
    pub has_default: bool,
    /// The foreign key, if it is one.
    pub references: Option<ForeignKey>,
    /// The inclusive lower bound a CHECK enforces.
    pub min: Option<f64>,
    /// The inclusive upper bound a CHECK enforces.
    pub max: Option<f64>,
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        nullable: false,
        has_default: false,
        references: None,
        min: None,
        max: None,
    }
}

impl Column {
    const fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }
    const fn defaulted(mut self) -> Self {
        self.has_default = true;
        self
    }
    const fn references(mut self, table: &'static str, on_delete: OnDelete) -> Self {
        self.references = Some(ForeignKey { table, on_delete });
        self
    }
    const fn range(mut self, min: f64, max: f64) -> Self {
        self.min = Some(min);
        self.max = Some(max);
        self
    }
    const fn min(mut self, min: f64) -> Self {
        self.min = Some(min);
        self
    }
}

/// Where a table's rows belong, which decides who may see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The `workspaces` table itself.
    Tenant,
    /// A column naming the row's workspace.
    Workspace(&'static str),
    /// A column naming the parent row, whose scope is the row's scope.
    Parent {
        /// The key column.
        column: &'static str,
        /// The parent table.
        table: &'static str,
    },
    /// A column naming the user the row belongs to (`api_tokens`).
    User(&'static str),
    /// `users`: a user sees themself and the users sharing a workspace with them.
    SharedUsers,
    /// Readable by everyone, written by server admins (`tools`).
    Global,
    /// Server admins only (`eval_llm_cache`).
    AdminOnly,
}

/// A table (or the view) of the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Table {
    /// The table's name.
    pub name: &'static str,
    /// Its GraphQL type name.
    pub type_name: &'static str,
    /// The prefix of its ids (the type name in snake_case).
    pub id_prefix: &'static str,
    /// Whether it is a view.
    pub view: bool,
    /// Whether rows are written once and never updated.
    pub append_only: bool,
    /// Where its rows belong.
    pub scope: Scope,
    /// Its unique keys besides the primary key.
    pub unique_keys: &'static [&'static [&'static str]],
    /// Its columns, in order.
    pub columns: &'static [Column],
}

impl Table {
    /// The column of that name.
    pub fn column(&self, name: &str) -> Option<&'static Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The foreign-key columns.
    pub fn foreign_keys(&self) -> impl Iterator<Item = (&'static Column, ForeignKey)> {
        self.columns
            .iter()
            .filter_map(|c| c.references.map(|fk| (c, fk)))
    }
}

/// The table (or view) of that name.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// The tables of the model, parents before children (the order the migrations create
/// them in), without the view.
pub fn tables() -> impl Iterator<Item = &'static Table> {
    TABLES.iter().filter(|t| !t.view)
}

/// The table whose ids start with the longest prefix of `id` (`eval_execution_…` is an
/// `EvalExecution`, not an `Eval`).
pub fn table_of_id(id: &str) -> Option<&'static Table> {
    tables()
        .filter(|t| {
            id.len() > t.id_prefix.len() + 1
                && id.starts_with(t.id_prefix)
                && id.as_bytes()[t.id_prefix.len()] == b'_'
        })
        .max_by_key(|t| t.id_prefix.len())
}

/// Every table of the model in creation order, then the `eval_comparison` view.
pub static TABLES: &[Table] = &[
    Table {
        name: "users",
        type_name: "User",
        id_prefix: "user",
        view: false,
        append_only: false,
        scope: Scope::SharedUsers,
        unique_keys: &[&["email"]],
        columns: &[
            col("id", Kind::Id),
            col("email", Kind::Text),
            col("name", Kind::Text).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "workspaces",
        type_name: "Workspace",
        id_prefix: "workspace",
        view: false,
        append_only: false,
        scope: Scope::Tenant,
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("user_id", Kind::Text)
                .nullable()
                .references("users", OnDelete::SetNull),
            col("name", Kind::Text),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "workspace_members",
        type_name: "WorkspaceMember",
        id_prefix: "workspace_member",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[&["workspace_id", "user_id"]],
        columns: &[
            col("id", Kind::Id),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade),
            col("user_id", Kind::Text).references("users", OnDelete::Cascade),
            col(
                "role",
                Kind::Enum(crate::models::WorkspaceMemberRole::VALUES),
            )
            .defaulted(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "api_tokens",
        type_name: "ApiToken",
        id_prefix: "api_token",
        view: false,
        append_only: false,
        scope: Scope::User("user_id"),
        unique_keys: &[&["token_hash"]],
        columns: &[
            col("id", Kind::Id),
            col("user_id", Kind::Text).references("users", OnDelete::Cascade),
            col("name", Kind::Text),
            col("token_hash", Kind::Text),
            col("last_used_at", Kind::Timestamp).nullable(),
            col("expires_at", Kind::Timestamp).nullable(),
            col("revoked_at", Kind::Timestamp).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "integrations",
        type_name: "Integration",
        id_prefix: "integration",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[&["workspace_id", "name"]],
        columns: &[
            col("id", Kind::Id),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade),
            col("name", Kind::Text),
            col(
                "platform",
                Kind::Enum(crate::models::IntegrationPlatform::VALUES),
            ),
            col("api_key_encrypted", Kind::Text),
            col("base_url", Kind::Text).nullable(),
            col("config", Kind::Json).nullable(),
            col(
                "status",
                Kind::Enum(crate::models::IntegrationStatus::VALUES),
            )
            .defaulted(),
            col("error_message", Kind::Text).nullable(),
            col("last_synced_at", Kind::Timestamp).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "agents",
        type_name: "Agent",
        id_prefix: "agent",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade),
            col("name", Kind::Text),
            col("description", Kind::Text).nullable(),
            col("status", Kind::Enum(crate::models::AgentStatus::VALUES)).defaulted(),
            col("active_version_id", Kind::Text)
                .nullable()
                .references("agent_versions", OnDelete::SetNull),
            col("active_eval_id", Kind::Text)
                .nullable()
                .references("evals", OnDelete::SetNull),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "agent_versions",
        type_name: "AgentVersion",
        id_prefix: "agent_version",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "agent_id",
            table: "agents",
        },
        unique_keys: &[&["agent_id", "version"]],
        columns: &[
            col("id", Kind::Id),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade),
            col("version", Kind::Int).min(1.0),
            col("prompt_template", Kind::Text),
            col("variables", Kind::Json).nullable(),
            col(
                "source",
                Kind::Enum(crate::models::AgentVersionSource::VALUES),
            ),
            col("parent_version_id", Kind::Text)
                .nullable()
                .references("agent_versions", OnDelete::SetNull),
            col("accuracy", Kind::Real).nullable().range(0.0, 1.0),
            col(
                "status",
                Kind::Enum(crate::models::AgentVersionStatus::VALUES),
            )
            .defaulted(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "system_prompts",
        type_name: "SystemPrompt",
        id_prefix: "system_prompt",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[&["workspace_id", "prompt_hash"]],
        columns: &[
            col("id", Kind::Id),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade),
            col("agent_name", Kind::Text),
            col("prompt_hash", Kind::Text),
            col("content", Kind::Text),
            col("metadata", Kind::Json).nullable(),
            col("first_seen_at", Kind::Timestamp),
            col("last_seen_at", Kind::Timestamp),
            col("trace_count", Kind::Int).defaulted().min(0.0),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "traces",
        type_name: "Trace",
        id_prefix: "trace",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[&["workspace_id", "source", "trace_id"]],
        columns: &[
            col("id", Kind::Id),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade),
            col("integration_id", Kind::Text)
                .nullable()
                .references("integrations", OnDelete::Cascade),
            col("trace_id", Kind::Text),
            col("source", Kind::Enum(crate::models::TraceSource::VALUES)),
            col("timestamp", Kind::Timestamp),
            col("metadata", Kind::Json).nullable(),
            col("steps", Kind::Json),
            col("spans", Kind::Json).nullable(),
            col("total_tokens", Kind::Int).nullable().min(0.0),
            col("total_duration_ms", Kind::Int).nullable().min(0.0),
            col("span_count", Kind::Int).nullable().min(0.0),
            col("raw_data", Kind::Json).nullable(),
            col("input_preview", Kind::Text).nullable(),
            col("output_preview", Kind::Text).nullable(),
            col("step_count", Kind::Int).defaulted().min(0.0),
            col("has_errors", Kind::Bool).defaulted(),
            col("agent_version_id", Kind::Text)
                .nullable()
                .references("agent_versions", OnDelete::SetNull),
            col(
                "assignment_status",
                Kind::Enum(crate::models::TraceAssignmentStatus::VALUES),
            )
            .defaulted(),
            col("system_prompt_id", Kind::Text)
                .nullable()
                .references("system_prompts", OnDelete::SetNull),
            col("imported_at", Kind::Timestamp),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "trace_summaries",
        type_name: "TraceSummary",
        id_prefix: "trace_summary",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "trace_id",
            table: "traces",
        },
        unique_keys: &[&["trace_id"]],
        columns: &[
            col("id", Kind::Id),
            col("trace_id", Kind::Text).references("traces", OnDelete::Cascade),
            col("summary", Kind::Text),
            col("key_behaviors", Kind::Json).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "feedback",
        type_name: "Feedback",
        id_prefix: "feedback",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "trace_id",
            table: "traces",
        },
        unique_keys: &[&["trace_id"]],
        columns: &[
            col("id", Kind::Id),
            col("trace_id", Kind::Text).references("traces", OnDelete::Cascade),
            col("agent_id", Kind::Text)
                .nullable()
                .references("agents", OnDelete::SetNull),
            col("rating", Kind::Enum(crate::models::FeedbackRating::VALUES)),
            col("rating_detail", Kind::Text).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "task_metadata",
        type_name: "TaskMetadata",
        id_prefix: "task_metadata",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "trace_id",
            table: "traces",
        },
        unique_keys: &[&["trace_id"]],
        columns: &[
            col("id", Kind::Id),
            col("trace_id", Kind::Text).references("traces", OnDelete::Cascade),
            col("user_message", Kind::Text),
            col("expected_output", Kind::Text).nullable(),
            col("expected_action", Kind::Text).nullable(),
            col("success_criteria", Kind::Json).nullable(),
            col("task_type", Kind::Text).nullable(),
            col(
                "difficulty",
                Kind::Enum(crate::models::TaskMetadataDifficulty::VALUES),
            )
            .nullable(),
            col("domain", Kind::Text).nullable(),
            col("custom_metadata", Kind::Json).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "task_similar_traces",
        type_name: "TaskSimilarTrace",
        id_prefix: "task_similar_trace",
        view: false,
        append_only: true,
        scope: Scope::Parent {
            column: "task_metadata_id",
            table: "task_metadata",
        },
        unique_keys: &[&["task_metadata_id", "similar_trace_id"]],
        columns: &[
            col("id", Kind::Id),
            col("task_metadata_id", Kind::Text).references("task_metadata", OnDelete::Cascade),
            col("similar_trace_id", Kind::Text).references("traces", OnDelete::Cascade),
            col("similarity_score", Kind::Real).range(0.0, 1.0),
            col("human_score", Kind::Real).nullable().range(0.0, 1.0),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "task_feedback_pairs",
        type_name: "TaskFeedbackPair",
        id_prefix: "task_feedback_pair",
        view: false,
        append_only: true,
        scope: Scope::Parent {
            column: "task_metadata_id",
            table: "task_metadata",
        },
        unique_keys: &[&["task_metadata_id", "feedback_trace_id"]],
        columns: &[
            col("id", Kind::Id),
            col("task_metadata_id", Kind::Text).references("task_metadata", OnDelete::Cascade),
            col("feedback_trace_id", Kind::Text).references("traces", OnDelete::Cascade),
            col("human_feedback", Kind::Text),
            col("human_score", Kind::Real).nullable().range(0.0, 1.0),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "functions",
        type_name: "Function",
        id_prefix: "function",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade),
            col("type", Kind::Enum(crate::models::FunctionType::VALUES)),
            col("name", Kind::Text),
            col("code", Kind::Text),
            col("input_schema", Kind::Json).nullable(),
            col("output_schema", Kind::Json).nullable(),
            col("model_used", Kind::Text).nullable(),
            col("parent_function_id", Kind::Text)
                .nullable()
                .references("functions", OnDelete::SetNull),
            col("status", Kind::Enum(crate::models::FunctionStatus::VALUES)).defaulted(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "agent_functions",
        type_name: "AgentFunction",
        id_prefix: "agent_function",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "agent_id",
            table: "agents",
        },
        unique_keys: &[&["agent_id", "role"]],
        columns: &[
            col("id", Kind::Id),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade),
            col("function_id", Kind::Text).references("functions", OnDelete::Cascade),
            col("role", Kind::Enum(crate::models::AgentFunctionRole::VALUES)),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "tools",
        type_name: "Tool",
        id_prefix: "tool",
        view: false,
        append_only: false,
        scope: Scope::Global,
        unique_keys: &[&["name"]],
        columns: &[
            col("id", Kind::Id),
            col("name", Kind::Text),
            col("description", Kind::Text),
            col("parameters_schema", Kind::Json),
            col("handler_key", Kind::Text),
            col("category", Kind::Enum(crate::models::ToolCategory::VALUES)).defaulted(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "agent_tools",
        type_name: "AgentTool",
        id_prefix: "agent_tool",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "agent_id",
            table: "agents",
        },
        unique_keys: &[&["agent_id", "tool_id"]],
        columns: &[
            col("id", Kind::Id),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade),
            col("tool_id", Kind::Text).references("tools", OnDelete::Cascade),
            col("config", Kind::Json).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "evals",
        type_name: "Eval",
        id_prefix: "eval",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "agent_id",
            table: "agents",
        },
        unique_keys: &[&["agent_id", "version"]],
        columns: &[
            col("id", Kind::Id),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade),
            col("version", Kind::Int).min(1.0),
            col("parent_eval_id", Kind::Text)
                .nullable()
                .references("evals", OnDelete::SetNull),
            col("name", Kind::Text),
            col("description", Kind::Text).nullable(),
            col("code", Kind::Text),
            col("model_used", Kind::Text).nullable(),
            col("accuracy", Kind::Real).nullable().range(0.0, 1.0),
            col("training_trace_ids", Kind::Json).nullable(),
            col("generation_prompt", Kind::Text).nullable(),
            col("test_results", Kind::Json).nullable(),
            col("execution_count", Kind::Int).defaulted().min(0.0),
            col("contradiction_count", Kind::Int).defaulted().min(0.0),
            col("status", Kind::Enum(crate::models::EvalStatus::VALUES)).defaulted(),
            col("auto_execute_enabled", Kind::Bool).defaulted(),
            col("auto_refine_enabled", Kind::Bool).defaulted(),
            col("monitoring_thresholds", Kind::Json).nullable(),
            col("cohen_kappa", Kind::Real).nullable().range(-1.0, 1.0),
            col("f1_score", Kind::Real).nullable().range(0.0, 1.0),
            col("precision", Kind::Real).nullable().range(0.0, 1.0),
            col("recall", Kind::Real).nullable().range(0.0, 1.0),
            col("variation", Kind::Text).nullable(),
            col("agreement_rate", Kind::Real).nullable().range(0.0, 1.0),
            col("confusion_matrix", Kind::Json).nullable(),
            col("per_trace_results", Kind::Json).nullable(),
            col("total_cost_usd", Kind::Real).nullable(),
            col("avg_duration_ms", Kind::Real).nullable(),
            col("activated_at", Kind::Timestamp).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "eval_executions",
        type_name: "EvalExecution",
        id_prefix: "eval_execution",
        view: false,
        append_only: true,
        scope: Scope::Parent {
            column: "eval_id",
            table: "evals",
        },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("eval_id", Kind::Text).references("evals", OnDelete::Cascade),
            col("trace_id", Kind::Text).references("traces", OnDelete::Cascade),
            col("predicted_result", Kind::Bool).nullable(),
            col("predicted_reason", Kind::Text).nullable(),
            col("execution_time_ms", Kind::Int).nullable().min(0.0),
            col("error", Kind::Text).nullable(),
            col("stdout", Kind::Text).nullable(),
            col("stderr", Kind::Text).nullable(),
            col("score", Kind::Real).nullable().range(0.0, 1.0),
            col("feedback", Kind::Text).nullable(),
            col("success", Kind::Bool).nullable(),
            col("llm_calls", Kind::Int).nullable().min(0.0),
            col("cache_hits", Kind::Int).nullable().min(0.0),
            col("llm_cost_usd", Kind::Real).nullable(),
            col("executed_at", Kind::Timestamp),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "eval_cv_results",
        type_name: "EvalCvResult",
        id_prefix: "eval_cv_result",
        view: false,
        append_only: true,
        scope: Scope::Parent {
            column: "eval_id",
            table: "evals",
        },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("eval_id", Kind::Text).references("evals", OnDelete::Cascade),
            col("k_folds", Kind::Int).defaulted().min(2.0),
            col("mean_accuracy", Kind::Real).nullable().range(0.0, 1.0),
            col("mean_f1", Kind::Real).nullable().range(0.0, 1.0),
            col("mean_agreement_rate", Kind::Real)
                .nullable()
                .range(0.0, 1.0),
            col("mean_kappa", Kind::Real).nullable().range(-1.0, 1.0),
            col("std_accuracy", Kind::Real).nullable().min(0.0),
            col("std_kappa", Kind::Real).nullable().min(0.0),
            col("is_stable", Kind::Bool).nullable(),
            col("fold_results", Kind::Json).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "eval_llm_cache",
        type_name: "EvalLlmCacheEntry",
        id_prefix: "eval_llm_cache_entry",
        view: false,
        append_only: false,
        scope: Scope::AdminOnly,
        unique_keys: &[&["prompt_hash", "model"]],
        columns: &[
            col("id", Kind::Id),
            col("prompt_hash", Kind::Text),
            col("model", Kind::Text),
            col("response_text", Kind::Text),
            col("tokens_input", Kind::Int).nullable().min(0.0),
            col("tokens_output", Kind::Int).nullable().min(0.0),
            col("cost_usd", Kind::Real).nullable(),
            col("expires_at", Kind::Timestamp).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "jobs",
        type_name: "Job",
        id_prefix: "job",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade),
            col("type", Kind::Enum(crate::models::JobType::VALUES)),
            col("status", Kind::Enum(crate::models::JobStatus::VALUES)).defaulted(),
            col("progress", Kind::Int).defaulted().range(0.0, 100.0),
            col("metadata", Kind::Json).nullable(),
            col("result", Kind::Json).nullable(),
            col("error", Kind::Text).nullable(),
            col("error_category", Kind::Text).nullable(),
            col("retry_count", Kind::Int).defaulted().min(0.0),
            col("max_retries", Kind::Int).defaulted().min(0.0),
            col("last_error_at", Kind::Timestamp).nullable(),
            col("next_retry_at", Kind::Timestamp).nullable(),
            col("priority", Kind::Int).defaulted(),
            col("agent_id", Kind::Text)
                .nullable()
                .references("agents", OnDelete::SetNull),
            col("agent_version_id", Kind::Text)
                .nullable()
                .references("agent_versions", OnDelete::SetNull),
            col("trigger_event", Kind::Text).nullable(),
            col("trigger_threshold", Kind::Text).nullable(),
            col("started_at", Kind::Timestamp).nullable(),
            col("completed_at", Kind::Timestamp).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "job_retry_history",
        type_name: "JobRetry",
        id_prefix: "job_retry",
        view: false,
        append_only: true,
        scope: Scope::Parent {
            column: "job_id",
            table: "jobs",
        },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("job_id", Kind::Text).references("jobs", OnDelete::Cascade),
            col("attempt", Kind::Int).min(1.0),
            col("error", Kind::Text),
            col("error_category", Kind::Text),
            col("delay_ms", Kind::Int).min(0.0),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "performance_snapshots",
        type_name: "PerformanceSnapshot",
        id_prefix: "performance_snapshot",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "eval_id",
            table: "evals",
        },
        unique_keys: &[&["eval_id", "snapshot_date"]],
        columns: &[
            col("id", Kind::Id),
            col("eval_id", Kind::Text).references("evals", OnDelete::Cascade),
            col("snapshot_date", Kind::Date),
            col("accuracy", Kind::Real).nullable().range(0.0, 1.0),
            col("execution_count", Kind::Int).defaulted().min(0.0),
            col("contradiction_count", Kind::Int).defaulted().min(0.0),
            col("error_count", Kind::Int).defaulted().min(0.0),
            col("pass_count", Kind::Int).defaulted().min(0.0),
            col("fail_count", Kind::Int).defaulted().min(0.0),
            col("prompt_distribution", Kind::Json).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "performance_alerts",
        type_name: "PerformanceAlert",
        id_prefix: "performance_alert",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "eval_id",
            table: "evals",
        },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("eval_id", Kind::Text).references("evals", OnDelete::Cascade),
            col(
                "alert_type",
                Kind::Enum(crate::models::PerformanceAlertAlertType::VALUES),
            ),
            col(
                "severity",
                Kind::Enum(crate::models::PerformanceAlertSeverity::VALUES),
            )
            .defaulted(),
            col("current_value", Kind::Real).nullable(),
            col("threshold_value", Kind::Real).nullable(),
            col("message", Kind::Text),
            col("prompt_id", Kind::Text)
                .nullable()
                .references("system_prompts", OnDelete::SetNull),
            col("triggered_at", Kind::Timestamp),
            col("acknowledged_at", Kind::Timestamp).nullable(),
            col("resolved_at", Kind::Timestamp).nullable(),
            col("acknowledged_by", Kind::Text)
                .nullable()
                .references("users", OnDelete::SetNull),
            col("resolved_by", Kind::Text)
                .nullable()
                .references("users", OnDelete::SetNull),
            col(
                "auto_action_taken",
                Kind::Enum(crate::models::PerformanceAlertAutoActionTaken::VALUES),
            )
            .nullable(),
            col("auto_action_job_id", Kind::Text)
                .nullable()
                .references("jobs", OnDelete::SetNull),
            col("metadata", Kind::Json).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "refinement_history",
        type_name: "Refinement",
        id_prefix: "refinement",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "eval_id",
            table: "evals",
        },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("eval_id", Kind::Text).references("evals", OnDelete::Cascade),
            col("parent_version", Kind::Int).nullable(),
            col("new_version", Kind::Int),
            col(
                "trigger_type",
                Kind::Enum(crate::models::RefinementTriggerType::VALUES),
            ),
            col("trigger_alert_id", Kind::Text)
                .nullable()
                .references("performance_alerts", OnDelete::SetNull),
            col("trigger_metrics", Kind::Json).nullable(),
            col("include_contradictions", Kind::Bool).defaulted(),
            col("custom_instructions", Kind::Text).nullable(),
            col("result_accuracy", Kind::Real).nullable(),
            col("improvement_delta", Kind::Real).nullable(),
            col(
                "status",
                Kind::Enum(crate::models::RefinementStatus::VALUES),
            )
            .defaulted(),
            col("job_id", Kind::Text)
                .nullable()
                .references("jobs", OnDelete::SetNull),
            col("rejected_at", Kind::Timestamp).nullable(),
            col("deployed_at", Kind::Timestamp).nullable(),
            col("rejected_by", Kind::Text)
                .nullable()
                .references("users", OnDelete::SetNull),
            col("deployed_by", Kind::Text)
                .nullable()
                .references("users", OnDelete::SetNull),
            col("rejection_reason", Kind::Text).nullable(),
            col("completed_at", Kind::Timestamp).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "auto_refine_cooldowns",
        type_name: "AutoRefineCooldown",
        id_prefix: "auto_refine_cooldown",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "eval_id",
            table: "evals",
        },
        unique_keys: &[&["eval_id"]],
        columns: &[
            col("id", Kind::Id),
            col("eval_id", Kind::Text).references("evals", OnDelete::Cascade),
            col("last_attempt_at", Kind::Timestamp),
            col("next_allowed_at", Kind::Timestamp),
            col("consecutive_failures", Kind::Int).defaulted().min(0.0),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "tasksets",
        type_name: "Taskset",
        id_prefix: "taskset",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade),
            col("name", Kind::Text),
            col("description", Kind::Text).nullable(),
            col("status", Kind::Enum(crate::models::TasksetStatus::VALUES)).defaulted(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "taskset_tasks",
        type_name: "TasksetTask",
        id_prefix: "taskset_task",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "taskset_id",
            table: "tasksets",
        },
        unique_keys: &[&["taskset_id", "content_hash"]],
        columns: &[
            col("id", Kind::Id),
            col("taskset_id", Kind::Text).references("tasksets", OnDelete::Cascade),
            col("user_message", Kind::Text),
            col("expected_output", Kind::Text).nullable(),
            col(
                "source",
                Kind::Enum(crate::models::TasksetTaskSource::VALUES),
            ),
            col("source_trace_id", Kind::Text)
                .nullable()
                .references("traces", OnDelete::SetNull),
            col("content_hash", Kind::Text),
            col("metadata", Kind::Json).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "taskset_runs",
        type_name: "TasksetRun",
        id_prefix: "taskset_run",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade),
            col("taskset_id", Kind::Text).references("tasksets", OnDelete::Cascade),
            col(
                "status",
                Kind::Enum(crate::models::TasksetRunStatus::VALUES),
            )
            .defaulted(),
            col("task_count", Kind::Int).min(0.0),
            col("model_provider", Kind::Text).nullable(),
            col("model_id", Kind::Text).nullable(),
            col("config", Kind::Json).defaulted(),
            col("error", Kind::Text).nullable(),
            col("started_at", Kind::Timestamp).nullable(),
            col("completed_at", Kind::Timestamp).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "taskset_run_results",
        type_name: "TasksetRunResult",
        id_prefix: "taskset_run_result",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "run_id",
            table: "taskset_runs",
        },
        unique_keys: &[&["run_id", "task_id"]],
        columns: &[
            col("id", Kind::Id),
            col("run_id", Kind::Text).references("taskset_runs", OnDelete::Cascade),
            col("task_id", Kind::Text).references("taskset_tasks", OnDelete::Cascade),
            col(
                "status",
                Kind::Enum(crate::models::TasksetRunResultStatus::VALUES),
            ),
            col("response", Kind::Text).nullable(),
            col("expected_output", Kind::Text).nullable(),
            col("score_reason", Kind::Text).nullable(),
            col("error", Kind::Text).nullable(),
            col("score", Kind::Real).nullable().range(0.0, 1.0),
            col("trace_id", Kind::Text)
                .nullable()
                .references("traces", OnDelete::SetNull),
            col("execution_time_ms", Kind::Int).nullable().min(0.0),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "gepa_runs",
        type_name: "GepaRun",
        id_prefix: "gepa_run",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade),
            col("eval_id", Kind::Text)
                .nullable()
                .references("evals", OnDelete::SetNull),
            col("seed_prompt", Kind::Text),
            col("test_case_count", Kind::Int).min(0.0),
            col("max_metric_calls", Kind::Int).defaulted().min(0.0),
            col("parallelism", Kind::Int).defaulted().min(1.0),
            col("status", Kind::Enum(crate::models::GepaRunStatus::VALUES)).defaulted(),
            col("progress_metric_calls", Kind::Int).defaulted().min(0.0),
            col("best_prompt", Kind::Text).nullable(),
            col("best_score", Kind::Real).nullable().range(0.0, 1.0),
            col("total_candidates", Kind::Int).defaulted().min(0.0),
            col("state_path", Kind::Text).nullable(),
            col("error", Kind::Text).nullable(),
            col("optimized_version_id", Kind::Text)
                .nullable()
                .references("agent_versions", OnDelete::SetNull),
            col("taskset_id", Kind::Text)
                .nullable()
                .references("tasksets", OnDelete::SetNull),
            col("train_split", Kind::Real).defaulted().range(0.0, 1.0),
            col("val_split", Kind::Real).defaulted().range(0.0, 1.0),
            col("random_seed", Kind::Int).nullable(),
            col("started_at", Kind::Timestamp).nullable(),
            col("completed_at", Kind::Timestamp).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "gepa_run_tasks",
        type_name: "GepaRunTask",
        id_prefix: "gepa_run_task",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "run_id",
            table: "gepa_runs",
        },
        unique_keys: &[&["run_id", "task_id"]],
        columns: &[
            col("id", Kind::Id),
            col("run_id", Kind::Text).references("gepa_runs", OnDelete::Cascade),
            col("task_id", Kind::Text).references("taskset_tasks", OnDelete::Cascade),
            col("split", Kind::Enum(crate::models::GepaRunTaskSplit::VALUES)),
            col("score", Kind::Real).nullable().range(0.0, 1.0),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "rollout_batches",
        type_name: "RolloutBatch",
        id_prefix: "rollout_batch",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade),
            col("system_prompt", Kind::Text),
            col("task_count", Kind::Int).min(0.0),
            col(
                "status",
                Kind::Enum(crate::models::RolloutBatchStatus::VALUES),
            )
            .defaulted(),
            col("config", Kind::Json).defaulted(),
            col("completed_at", Kind::Timestamp).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "rollout_results",
        type_name: "RolloutResult",
        id_prefix: "rollout_result",
        view: false,
        append_only: true,
        scope: Scope::Parent {
            column: "batch_id",
            table: "rollout_batches",
        },
        unique_keys: &[&["batch_id", "task_id"]],
        columns: &[
            col("id", Kind::Id),
            col("batch_id", Kind::Text).references("rollout_batches", OnDelete::Cascade),
            col("task_id", Kind::Text),
            col(
                "status",
                Kind::Enum(crate::models::RolloutResultStatus::VALUES),
            ),
            col("trace", Kind::Json).nullable(),
            col("error", Kind::Text).nullable(),
            col("execution_time_ms", Kind::Int).nullable().min(0.0),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "playground_sessions",
        type_name: "PlaygroundSession",
        id_prefix: "playground_session",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade),
            col("agent_version_id", Kind::Text).references("agent_versions", OnDelete::Cascade),
            col("messages", Kind::Json).defaulted(),
            col("variables", Kind::Json).defaulted(),
            col("files", Kind::Json).defaulted(),
            col(
                "model_provider",
                Kind::Enum(crate::models::PlaygroundSessionModelProvider::VALUES),
            ),
            col("model_id", Kind::Text),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "playground_steps",
        type_name: "PlaygroundStep",
        id_prefix: "playground_step",
        view: false,
        append_only: true,
        scope: Scope::Parent {
            column: "session_id",
            table: "playground_sessions",
        },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("session_id", Kind::Text).references("playground_sessions", OnDelete::Cascade),
            col("trace_id", Kind::Text).references("traces", OnDelete::Cascade),
            col("step_index", Kind::Int).min(0.0),
            col(
                "step_type",
                Kind::Enum(crate::models::PlaygroundStepStepType::VALUES),
            ),
            col("input", Kind::Json).nullable(),
            col("output", Kind::Json).nullable(),
            col("tool_args", Kind::Json).nullable(),
            col("tool_result", Kind::Json).nullable(),
            col("tool_name", Kind::Text).nullable(),
            col("tool_error", Kind::Text).nullable(),
            col("latency_ms", Kind::Int).nullable().min(0.0),
            col("tokens_input", Kind::Int).nullable().min(0.0),
            col("tokens_output", Kind::Int).nullable().min(0.0),
            col("timestamp", Kind::Timestamp),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "workflows",
        type_name: "Workflow",
        id_prefix: "workflow",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade),
            col("name", Kind::Text),
            col("description", Kind::Text).nullable(),
            col("nodes", Kind::Json),
            col("edges", Kind::Json),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "executions",
        type_name: "Execution",
        id_prefix: "execution",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "workflow_id",
            table: "workflows",
        },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("workflow_id", Kind::Text).references("workflows", OnDelete::Cascade),
            col("user_id", Kind::Text)
                .nullable()
                .references("users", OnDelete::SetNull),
            col("status", Kind::Enum(crate::models::ExecutionStatus::VALUES)).defaulted(),
            col("data", Kind::Json).nullable(),
            col("result", Kind::Json).nullable(),
            col("error", Kind::Text).nullable(),
            col("started_at", Kind::Timestamp).nullable(),
            col("completed_at", Kind::Timestamp).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "execution_steps",
        type_name: "ExecutionStep",
        id_prefix: "execution_step",
        view: false,
        append_only: false,
        scope: Scope::Parent {
            column: "execution_id",
            table: "executions",
        },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("execution_id", Kind::Text).references("executions", OnDelete::Cascade),
            col("node_id", Kind::Text),
            col(
                "status",
                Kind::Enum(crate::models::ExecutionStepStatus::VALUES),
            )
            .defaulted(),
            col("input", Kind::Json).nullable(),
            col("output", Kind::Json).nullable(),
            col("validation", Kind::Json).nullable(),
            col("retry_count", Kind::Int).defaulted().min(0.0),
            col("max_retries", Kind::Int).defaulted().min(0.0),
            col("error", Kind::Text).nullable(),
            col("started_at", Kind::Timestamp).nullable(),
            col("completed_at", Kind::Timestamp).nullable(),
            col("created_at", Kind::Timestamp).defaulted(),
            col("updated_at", Kind::Timestamp).defaulted(),
        ],
    },
    Table {
        name: "eval_comparison",
        type_name: "EvalComparison",
        id_prefix: "eval_comparison",
        view: true,
        append_only: false,
        scope: Scope::Parent {
            column: "eval_id",
            table: "evals",
        },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id),
            col("execution_id", Kind::Text),
            col("eval_id", Kind::Text),
            col("trace_id", Kind::Text),
            col("predicted_result", Kind::Bool).nullable(),
            col("predicted_reason", Kind::Text).nullable(),
            col("execution_time_ms", Kind::Int).nullable(),
            col("execution_error", Kind::Text).nullable(),
            col("executed_at", Kind::Timestamp),
            col("feedback_id", Kind::Text).nullable(),
            col(
                "human_rating",
                Kind::Enum(crate::models::FeedbackRating::VALUES),
            )
            .nullable(),
            col("rating_detail", Kind::Text).nullable(),
            col("is_contradiction", Kind::Bool).nullable(),
        ],
    },
];
