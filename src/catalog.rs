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
    /// What it holds (the API's field description).
    pub doc: &'static str,
    /// An integer that may need 64 bits: the API's `BigInt` (other integers are GraphQL's
    /// 32-bit `Int`).
    pub big: bool,
    /// A reference that names the row's parent in its own workspace, whose workspace the row
    /// carries in its scope column (`feedback.trace_id`): whoever sees the row sees the parent.
    pub parent_in_workspace: bool,
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
        doc: "",
        big: false,
        parent_in_workspace: false,
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
    const fn big(mut self) -> Self {
        self.big = true;
        self
    }
    const fn parent_in_workspace(mut self) -> Self {
        self.parent_in_workspace = true;
        self
    }
    const fn doc(mut self, doc: &'static str) -> Self {
        self.doc = doc;
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
    /// What its rows are (the API's type description).
    pub doc: &'static str,
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
        self.columns.iter().filter_map(|c| c.references.map(|fk| (c, fk)))
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
            id.len() > t.id_prefix.len() + 1 && id.starts_with(t.id_prefix) && id.as_bytes()[t.id_prefix.len()] == b'_'
        })
        .max_by_key(|t| t.id_prefix.len())
}

/// Every table of the model in creation order, then the `eval_comparison` view.
pub static TABLES: &[Table] = &[
    Table {
        name: "users",
        type_name: "User",
        id_prefix: "user",
        doc: "A person who uses iofold. Visible to themself and to the users who share a workspace with them.",
        view: false,
        append_only: false,
        scope: Scope::SharedUsers,
        unique_keys: &[&["email"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `user_` and a UUID v7, generated by the server."),
            col("email", Kind::Text).doc("Unique, validated (`local@domain.tld`), stored lower-case."),
            col("name", Kind::Text).nullable().doc("Name."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "workspaces",
        type_name: "Workspace",
        id_prefix: "workspace",
        doc: "The tenant: every other row belongs to exactly one workspace. Who may act in it is decided by its members.",
        view: false,
        append_only: false,
        scope: Scope::Tenant,
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `workspace_` and a UUID v7, generated by the server."),
            col("user_id", Kind::Text).nullable().references("users", OnDelete::SetNull).doc("References `users` (set to null when it is deleted). The creator; membership decides access."),
            col("name", Kind::Text).doc("Name."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "workspace_members",
        type_name: "WorkspaceMember",
        id_prefix: "workspace_member",
        doc: "Who may act in a workspace, and with which role.",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[&["workspace_id", "user_id"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `workspace_member_` and a UUID v7, generated by the server."),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade).doc("References `workspaces` (deleted with it)."),
            col("user_id", Kind::Text).references("users", OnDelete::Cascade).doc("References `users` (deleted with it)."),
            col("role", Kind::Enum(crate::models::WorkspaceMemberRole::VALUES)).defaulted().doc("`owner` | `admin` | `member` | `viewer`, default `member`."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "api_tokens",
        type_name: "ApiToken",
        id_prefix: "api_token",
        doc: "An API token of a user (scope: that user). Only the SHA-256 hash of the secret is stored; the secret is shown once.",
        view: false,
        append_only: false,
        scope: Scope::User("user_id"),
        unique_keys: &[&["token_hash"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `api_token_` and a UUID v7, generated by the server."),
            col("user_id", Kind::Text).references("users", OnDelete::Cascade).doc("References `users` (deleted with it)."),
            col("name", Kind::Text).doc("Label."),
            col("token_hash", Kind::Text).doc("Unique; SHA-256 of the secret; the secret is shown once."),
            col("last_used_at", Kind::Timestamp).nullable().doc("Last used at."),
            col("expires_at", Kind::Timestamp).nullable().doc("Expires at."),
            col("revoked_at", Kind::Timestamp).nullable().doc("Revoked at."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "integrations",
        type_name: "Integration",
        id_prefix: "integration",
        doc: "A connection to a trace platform (Langfuse, LangSmith, OpenAI, …). Scope: its workspace.",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[&["workspace_id", "name"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `integration_` and a UUID v7, generated by the server."),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade).doc("References `workspaces` (deleted with it)."),
            col("name", Kind::Text).doc("Unique per workspace."),
            col("platform", Kind::Enum(crate::models::IntegrationPlatform::VALUES)).doc("`langfuse` | `langsmith` | `openai` | `playground` | `taskset`."),
            col("api_key_encrypted", Kind::Text).doc("Encrypted at rest; never readable through the API."),
            col("base_url", Kind::Text).nullable().doc("Self-hosted instances."),
            col("config", Kind::Json).nullable().doc("Config."),
            col("status", Kind::Enum(crate::models::IntegrationStatus::VALUES)).defaulted().doc("`active` | `error`, default `active`."),
            col("error_message", Kind::Text).nullable().doc("Last error while status = error."),
            col("last_synced_at", Kind::Timestamp).nullable().doc("Last synced at."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "agents",
        type_name: "Agent",
        id_prefix: "agent",
        doc: "An agent discovered in traces or defined by hand. Scope: its workspace.",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `agent_` and a UUID v7, generated by the server."),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade).doc("References `workspaces` (deleted with it)."),
            col("name", Kind::Text).doc("Name."),
            col("description", Kind::Text).nullable().doc("Description."),
            col("status", Kind::Enum(crate::models::AgentStatus::VALUES)).defaulted().doc("`discovered` | `confirmed` | `archived`, default `discovered`."),
            col("active_version_id", Kind::Text).nullable().references("agent_versions", OnDelete::SetNull).doc("References `agent_versions` (set to null when it is deleted). A version of this agent."),
            col("active_eval_id", Kind::Text).nullable().references("evals", OnDelete::SetNull).doc("References `evals` (set to null when it is deleted). An eval of this agent."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "agent_versions",
        type_name: "AgentVersion",
        id_prefix: "agent_version",
        doc: "A version of an agent's prompt template. Scope: its agent.",
        view: false,
        append_only: false,
        scope: Scope::Parent { column: "agent_id", table: "agents" },
        unique_keys: &[&["agent_id", "version"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `agent_version_` and a UUID v7, generated by the server."),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade).doc("References `agents` (deleted with it)."),
            col("version", Kind::Int).min(1.0).doc("Unique per agent, assigned by the server as max+1 when omitted."),
            col("prompt_template", Kind::Text).doc("Prompt template."),
            col("variables", Kind::Json).nullable().doc("Variables."),
            col("source", Kind::Enum(crate::models::AgentVersionSource::VALUES)).doc("`discovered` | `manual` | `ai_improved`."),
            col("parent_version_id", Kind::Text).nullable().references("agent_versions", OnDelete::SetNull).doc("References `agent_versions` (set to null when it is deleted)."),
            col("accuracy", Kind::Real).nullable().range(0.0, 1.0).doc("0..1."),
            col("status", Kind::Enum(crate::models::AgentVersionStatus::VALUES)).defaulted().doc("`candidate` | `active` | `rejected` | `archived`, default `candidate`."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "system_prompts",
        type_name: "SystemPrompt",
        id_prefix: "system_prompt",
        doc: "A distinct system prompt seen in traces, by hash. Scope: its workspace.",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[&["workspace_id", "prompt_hash"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `system_prompt_` and a UUID v7, generated by the server."),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade).doc("References `workspaces` (deleted with it)."),
            col("agent_name", Kind::Text).doc("Agent name."),
            col("prompt_hash", Kind::Text).doc("Unique per workspace."),
            col("content", Kind::Text).doc("Content."),
            col("metadata", Kind::Json).nullable().doc("Metadata."),
            col("first_seen_at", Kind::Timestamp).doc("First seen at."),
            col("last_seen_at", Kind::Timestamp).doc("Last seen at."),
            col("trace_count", Kind::Int).defaulted().min(0.0).doc("Default 1."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "traces",
        type_name: "Trace",
        id_prefix: "trace",
        doc: "An imported, normalised agent run. Scope: its workspace.",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[&["workspace_id", "source", "trace_id"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `trace_` and a UUID v7, generated by the server."),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade).doc("References `workspaces` (deleted with it)."),
            col("integration_id", Kind::Text).nullable().references("integrations", OnDelete::Cascade).doc("References `integrations` (deleted with it). Null for playground/taskset traces."),
            col("trace_id", Kind::Text).doc("The id on the source platform."),
            col("source", Kind::Enum(crate::models::TraceSource::VALUES)).doc("`langfuse` | `langsmith` | `openai` | `playground` | `taskset`."),
            col("timestamp", Kind::Timestamp).doc("When the run happened."),
            col("metadata", Kind::Json).nullable().doc("Metadata."),
            col("steps", Kind::Json).doc("Array of steps."),
            col("spans", Kind::Json).nullable().doc("OpenInference spans."),
            col("total_tokens", Kind::Int).nullable().min(0.0).big().doc("Total tokens."),
            col("total_duration_ms", Kind::Int).nullable().min(0.0).big().doc("Total duration ms."),
            col("span_count", Kind::Int).nullable().min(0.0).doc("Span count."),
            col("raw_data", Kind::Json).nullable().doc("Raw data."),
            col("input_preview", Kind::Text).nullable().doc("First 200 characters, computed on import."),
            col("output_preview", Kind::Text).nullable().doc("First 200 characters, computed on import."),
            col("step_count", Kind::Int).defaulted().min(0.0).doc("Default 0, computed on import."),
            col("has_errors", Kind::Bool).defaulted().doc("Default false, computed on import."),
            col("agent_version_id", Kind::Text).nullable().references("agent_versions", OnDelete::SetNull).doc("References `agent_versions` (set to null when it is deleted)."),
            col("assignment_status", Kind::Enum(crate::models::TraceAssignmentStatus::VALUES)).defaulted().doc("`unassigned` | `assigned` | `orphaned`, default `unassigned`."),
            col("system_prompt_id", Kind::Text).nullable().references("system_prompts", OnDelete::SetNull).doc("References `system_prompts` (set to null when it is deleted)."),
            col("imported_at", Kind::Timestamp).doc("Imported at."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "trace_summaries",
        type_name: "TraceSummary",
        id_prefix: "trace_summary",
        doc: "A summary of a trace, one per trace. Scope: its trace.",
        view: false,
        append_only: false,
        scope: Scope::Parent { column: "trace_id", table: "traces" },
        unique_keys: &[&["trace_id"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `trace_summary_` and a UUID v7, generated by the server."),
            col("trace_id", Kind::Text).references("traces", OnDelete::Cascade).doc("References `traces` (deleted with it). Unique."),
            col("summary", Kind::Text).doc("Summary."),
            col("key_behaviors", Kind::Json).nullable().doc("Array of strings."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "feedback",
        type_name: "Feedback",
        id_prefix: "feedback",
        doc: "The human rating of a trace, one per trace. Scope: its trace's workspace, which the row carries.",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[&["trace_id"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `feedback_` and a UUID v7, generated by the server."),
            col("trace_id", Kind::Text).references("traces", OnDelete::Cascade).parent_in_workspace().doc("References `traces` (deleted with it). Unique."),
            col("agent_id", Kind::Text).nullable().references("agents", OnDelete::SetNull).doc("References `agents` (set to null when it is deleted)."),
            col("rating", Kind::Enum(crate::models::FeedbackRating::VALUES)).doc("`positive` | `negative` | `neutral`."),
            col("rating_detail", Kind::Text).nullable().doc("The annotator's notes."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade).doc("References `workspaces` (deleted with it): its trace's workspace, set by the server."),
        ],
    },
    Table {
        name: "task_metadata",
        type_name: "TaskMetadata",
        id_prefix: "task_metadata",
        doc: "The task a trace performed, extracted for evaluation, one per trace. Scope: its trace.",
        view: false,
        append_only: false,
        scope: Scope::Parent { column: "trace_id", table: "traces" },
        unique_keys: &[&["trace_id"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `task_metadata_` and a UUID v7, generated by the server."),
            col("trace_id", Kind::Text).references("traces", OnDelete::Cascade).doc("References `traces` (deleted with it). Unique."),
            col("user_message", Kind::Text).doc("User message."),
            col("expected_output", Kind::Text).nullable().doc("Expected output."),
            col("expected_action", Kind::Text).nullable().doc("Expected action."),
            col("success_criteria", Kind::Json).nullable().doc("Array of strings."),
            col("task_type", Kind::Text).nullable().doc("Task type."),
            col("difficulty", Kind::Enum(crate::models::TaskMetadataDifficulty::VALUES)).nullable().doc("`easy` | `medium` | `hard`."),
            col("domain", Kind::Text).nullable().doc("Domain."),
            col("custom_metadata", Kind::Json).nullable().doc("Custom metadata."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "task_similar_traces",
        type_name: "TaskSimilarTrace",
        id_prefix: "task_similar_trace",
        doc: "A trace similar to a task (append-only). Scope: its task metadata.",
        view: false,
        append_only: true,
        scope: Scope::Parent { column: "task_metadata_id", table: "task_metadata" },
        unique_keys: &[&["task_metadata_id", "similar_trace_id"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `task_similar_trace_` and a UUID v7, generated by the server."),
            col("task_metadata_id", Kind::Text).references("task_metadata", OnDelete::Cascade).doc("References `task_metadata` (deleted with it)."),
            col("similar_trace_id", Kind::Text).references("traces", OnDelete::Cascade).doc("References `traces` (deleted with it). Same workspace."),
            col("similarity_score", Kind::Real).range(0.0, 1.0).doc("0..1."),
            col("human_score", Kind::Real).nullable().range(0.0, 1.0).doc("0..1."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "task_feedback_pairs",
        type_name: "TaskFeedbackPair",
        id_prefix: "task_feedback_pair",
        doc: "Human feedback on a trace paired with a task (append-only). Scope: its task metadata.",
        view: false,
        append_only: true,
        scope: Scope::Parent { column: "task_metadata_id", table: "task_metadata" },
        unique_keys: &[&["task_metadata_id", "feedback_trace_id"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `task_feedback_pair_` and a UUID v7, generated by the server."),
            col("task_metadata_id", Kind::Text).references("task_metadata", OnDelete::Cascade).doc("References `task_metadata` (deleted with it)."),
            col("feedback_trace_id", Kind::Text).references("traces", OnDelete::Cascade).doc("References `traces` (deleted with it). Same workspace."),
            col("human_feedback", Kind::Text).doc("Human feedback."),
            col("human_score", Kind::Real).nullable().range(0.0, 1.0).doc("0..1."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "functions",
        type_name: "Function",
        id_prefix: "function",
        doc: "A generated function (template extractor, injector or eval). Scope: its workspace.",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `function_` and a UUID v7, generated by the server."),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade).doc("References `workspaces` (deleted with it)."),
            col("type", Kind::Enum(crate::models::FunctionType::VALUES)).doc("`template_extractor` | `template_injector` | `eval`."),
            col("name", Kind::Text).doc("Name."),
            col("code", Kind::Text).doc("Code."),
            col("input_schema", Kind::Json).nullable().doc("Input schema."),
            col("output_schema", Kind::Json).nullable().doc("Output schema."),
            col("model_used", Kind::Text).nullable().doc("Model used."),
            col("parent_function_id", Kind::Text).nullable().references("functions", OnDelete::SetNull).doc("References `functions` (set to null when it is deleted)."),
            col("status", Kind::Enum(crate::models::FunctionStatus::VALUES)).defaulted().doc("`active` | `archived` | `failed`, default `active`."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "agent_functions",
        type_name: "AgentFunction",
        id_prefix: "agent_function",
        doc: "Links an agent to its extractor and injector functions (one per role). Scope: its agent.",
        view: false,
        append_only: false,
        scope: Scope::Parent { column: "agent_id", table: "agents" },
        unique_keys: &[&["agent_id", "role"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `agent_function_` and a UUID v7, generated by the server."),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade).doc("References `agents` (deleted with it)."),
            col("function_id", Kind::Text).references("functions", OnDelete::Cascade).doc("References `functions` (deleted with it). Same workspace."),
            col("role", Kind::Enum(crate::models::AgentFunctionRole::VALUES)).doc("`extractor` | `injector`."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "tools",
        type_name: "Tool",
        id_prefix: "tool",
        doc: "A tool in the global registry: readable by everyone, written by server admins.",
        view: false,
        append_only: false,
        scope: Scope::Global,
        unique_keys: &[&["name"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `tool_` and a UUID v7, generated by the server."),
            col("name", Kind::Text).doc("Unique."),
            col("description", Kind::Text).doc("Description."),
            col("parameters_schema", Kind::Json).doc("JSON Schema of the tool's arguments."),
            col("handler_key", Kind::Text).doc("Handler key."),
            col("category", Kind::Enum(crate::models::ToolCategory::VALUES)).defaulted().doc("`general` | `code` | `filesystem` | `email`, default `general`."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "agent_tools",
        type_name: "AgentTool",
        id_prefix: "agent_tool",
        doc: "Links an agent to a tool it may call. Scope: its agent.",
        view: false,
        append_only: false,
        scope: Scope::Parent { column: "agent_id", table: "agents" },
        unique_keys: &[&["agent_id", "tool_id"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `agent_tool_` and a UUID v7, generated by the server."),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade).doc("References `agents` (deleted with it)."),
            col("tool_id", Kind::Text).references("tools", OnDelete::Cascade).doc("References `tools` (deleted with it)."),
            col("config", Kind::Json).nullable().doc("Config."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "evals",
        type_name: "Eval",
        id_prefix: "eval",
        doc: "A generated Python eval function, versioned per agent. Scope: its agent.",
        view: false,
        append_only: false,
        scope: Scope::Parent { column: "agent_id", table: "agents" },
        unique_keys: &[&["agent_id", "version"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `eval_` and a UUID v7, generated by the server."),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade).doc("References `agents` (deleted with it)."),
            col("version", Kind::Int).min(1.0).doc("Unique per agent, max+1 when omitted."),
            col("parent_eval_id", Kind::Text).nullable().references("evals", OnDelete::SetNull).doc("References `evals` (set to null when it is deleted). Refinement chain."),
            col("name", Kind::Text).doc("Name."),
            col("description", Kind::Text).nullable().doc("Description."),
            col("code", Kind::Text).doc("Code."),
            col("model_used", Kind::Text).nullable().doc("Model used."),
            col("accuracy", Kind::Real).nullable().range(0.0, 1.0).doc("0..1."),
            col("training_trace_ids", Kind::Json).nullable().doc("Array of trace ids."),
            col("generation_prompt", Kind::Text).nullable().doc("Generation prompt."),
            col("test_results", Kind::Json).nullable().doc("Test results."),
            col("execution_count", Kind::Int).defaulted().min(0.0).doc("Default 0; always equal to the eval's executions and to its rows with `is_contradiction` true in `eval_comparison`: every write that can change them (recording or deleting executions; creating, changing or deleting a rating; deleting traces, directly or by cascade) recomputes them in the same transaction, or triggers maintain them."),
            col("contradiction_count", Kind::Int).defaulted().min(0.0).doc("Default 0; always equal to the eval's executions and to its rows with `is_contradiction` true in `eval_comparison`: every write that can change them (recording or deleting executions; creating, changing or deleting a rating; deleting traces, directly or by cascade) recomputes them in the same transaction, or triggers maintain them."),
            col("status", Kind::Enum(crate::models::EvalStatus::VALUES)).defaulted().doc("`draft` | `candidate` | `testing` | `active` | `archived`, default `draft`."),
            col("auto_execute_enabled", Kind::Bool).defaulted().doc("Default false."),
            col("auto_refine_enabled", Kind::Bool).defaulted().doc("Default false."),
            col("monitoring_thresholds", Kind::Json).nullable().doc("Monitoring thresholds."),
            col("cohen_kappa", Kind::Real).nullable().range(-1.0, 1.0).doc("-1..1."),
            col("f1_score", Kind::Real).nullable().range(0.0, 1.0).doc("0..1 each."),
            col("precision", Kind::Real).nullable().range(0.0, 1.0).doc("0..1 each."),
            col("recall", Kind::Real).nullable().range(0.0, 1.0).doc("0..1 each."),
            col("variation", Kind::Text).nullable().doc("E.g. correctness, efficiency."),
            col("agreement_rate", Kind::Real).nullable().range(0.0, 1.0).doc("0..1."),
            col("confusion_matrix", Kind::Json).nullable().doc("Confusion matrix."),
            col("per_trace_results", Kind::Json).nullable().doc("Array."),
            col("total_cost_usd", Kind::Real).nullable().doc("Total cost usd."),
            col("avg_duration_ms", Kind::Real).nullable().doc("Avg duration ms."),
            col("activated_at", Kind::Timestamp).nullable().doc("Set when status becomes `active`."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "eval_executions",
        type_name: "EvalExecution",
        id_prefix: "eval_execution",
        doc: "A prediction of an eval on a trace (append-only). Scope: its eval.",
        view: false,
        append_only: true,
        scope: Scope::Parent { column: "eval_id", table: "evals" },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `eval_execution_` and a UUID v7, generated by the server."),
            col("eval_id", Kind::Text).references("evals", OnDelete::Cascade).doc("References `evals` (deleted with it)."),
            col("trace_id", Kind::Text).references("traces", OnDelete::Cascade).doc("References `traces` (deleted with it). Same workspace."),
            col("predicted_result", Kind::Bool).nullable().doc("Pass / fail."),
            col("predicted_reason", Kind::Text).nullable().doc("Predicted reason."),
            col("execution_time_ms", Kind::Int).nullable().min(0.0).doc("Execution time ms."),
            col("error", Kind::Text).nullable().doc("Error."),
            col("stdout", Kind::Text).nullable().doc("Stdout."),
            col("stderr", Kind::Text).nullable().doc("Stderr."),
            col("score", Kind::Real).nullable().range(0.0, 1.0).doc("0..1."),
            col("feedback", Kind::Text).nullable().doc("Feedback."),
            col("success", Kind::Bool).nullable().doc("Success."),
            col("llm_calls", Kind::Int).nullable().min(0.0).doc("Llm calls."),
            col("cache_hits", Kind::Int).nullable().min(0.0).doc("Cache hits."),
            col("llm_cost_usd", Kind::Real).nullable().doc("Llm cost usd."),
            col("executed_at", Kind::Timestamp).doc("Executed at."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "eval_cv_results",
        type_name: "EvalCvResult",
        id_prefix: "eval_cv_result",
        doc: "A cross-validation result of an eval (append-only). Scope: its eval.",
        view: false,
        append_only: true,
        scope: Scope::Parent { column: "eval_id", table: "evals" },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `eval_cv_result_` and a UUID v7, generated by the server."),
            col("eval_id", Kind::Text).references("evals", OnDelete::Cascade).doc("References `evals` (deleted with it)."),
            col("k_folds", Kind::Int).defaulted().min(2.0).doc("Default 5."),
            col("mean_accuracy", Kind::Real).nullable().range(0.0, 1.0).doc("0..1 each."),
            col("mean_f1", Kind::Real).nullable().range(0.0, 1.0).doc("0..1 each."),
            col("mean_agreement_rate", Kind::Real).nullable().range(0.0, 1.0).doc("0..1 each."),
            col("mean_kappa", Kind::Real).nullable().range(-1.0, 1.0).doc("-1..1."),
            col("std_accuracy", Kind::Real).nullable().min(0.0).doc("≥ 0."),
            col("std_kappa", Kind::Real).nullable().min(0.0).doc("≥ 0."),
            col("is_stable", Kind::Bool).nullable().doc("Is stable."),
            col("fold_results", Kind::Json).nullable().doc("Array."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "eval_llm_cache",
        type_name: "EvalLlmCacheEntry",
        id_prefix: "eval_llm_cache_entry",
        doc: "A cached LLM response used by evals. Global, server admins only.",
        view: false,
        append_only: false,
        scope: Scope::AdminOnly,
        unique_keys: &[&["prompt_hash", "model"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `eval_llm_cache_entry_` and a UUID v7, generated by the server."),
            col("prompt_hash", Kind::Text).doc("SHA-256 of prompt and model."),
            col("model", Kind::Text).doc("Model."),
            col("response_text", Kind::Text).doc("Response text."),
            col("tokens_input", Kind::Int).nullable().min(0.0).big().doc("Tokens input."),
            col("tokens_output", Kind::Int).nullable().min(0.0).big().doc("Tokens output."),
            col("cost_usd", Kind::Real).nullable().doc("Cost usd."),
            col("expires_at", Kind::Timestamp).nullable().doc("Expires at."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "jobs",
        type_name: "Job",
        id_prefix: "job",
        doc: "Background work with progress. Scope: its workspace.",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `job_` and a UUID v7, generated by the server."),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade).doc("References `workspaces` (deleted with it)."),
            col("type", Kind::Enum(crate::models::JobType::VALUES)).doc("`import` | `generate` | `execute` | `monitor` | `auto_refine` | `agent_discovery` | `taskset_run` | `gepa`."),
            col("status", Kind::Enum(crate::models::JobStatus::VALUES)).defaulted().doc("`queued` | `running` | `completed` | `failed` | `cancelled`, default `queued`; moves queued → running → completed / failed / cancelled, queued → cancelled, and running → queued only as a retry (increments `retry_count`, sets `next_retry_at`, writes a `job_retry_history` row; refused once `retry_count` = `max_retries`)."),
            col("progress", Kind::Int).defaulted().range(0.0, 100.0).doc("0..100, default 0; never decreases within one attempt."),
            col("metadata", Kind::Json).nullable().doc("The job's input context."),
            col("result", Kind::Json).nullable().doc("Result."),
            col("error", Kind::Text).nullable().doc("Error."),
            col("error_category", Kind::Text).nullable().doc("Error category."),
            col("retry_count", Kind::Int).defaulted().min(0.0).doc("Default 0."),
            col("max_retries", Kind::Int).defaulted().min(0.0).doc("Default 5."),
            col("last_error_at", Kind::Timestamp).nullable().doc("Last error at."),
            col("next_retry_at", Kind::Timestamp).nullable().doc("Next retry at."),
            col("priority", Kind::Int).defaulted().doc("Default 0."),
            col("agent_id", Kind::Text).nullable().references("agents", OnDelete::SetNull).doc("References `agents` (set to null when it is deleted)."),
            col("agent_version_id", Kind::Text).nullable().references("agent_versions", OnDelete::SetNull).doc("References `agent_versions` (set to null when it is deleted)."),
            col("trigger_event", Kind::Text).nullable().doc("Trigger event."),
            col("trigger_threshold", Kind::Text).nullable().doc("Trigger threshold."),
            col("started_at", Kind::Timestamp).nullable().doc("Started at."),
            col("completed_at", Kind::Timestamp).nullable().doc("Completed at."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "job_retry_history",
        type_name: "JobRetry",
        id_prefix: "job_retry",
        doc: "A retry of a job (append-only). Scope: its job.",
        view: false,
        append_only: true,
        scope: Scope::Parent { column: "job_id", table: "jobs" },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `job_retry_` and a UUID v7, generated by the server."),
            col("job_id", Kind::Text).references("jobs", OnDelete::Cascade).doc("References `jobs` (deleted with it)."),
            col("attempt", Kind::Int).min(1.0).doc("Attempt."),
            col("error", Kind::Text).doc("Error."),
            col("error_category", Kind::Text).doc("Error category."),
            col("delay_ms", Kind::Int).min(0.0).doc("Delay ms."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "performance_snapshots",
        type_name: "PerformanceSnapshot",
        id_prefix: "performance_snapshot",
        doc: "A day's health figures of an eval. Scope: its eval.",
        view: false,
        append_only: false,
        scope: Scope::Parent { column: "eval_id", table: "evals" },
        unique_keys: &[&["eval_id", "snapshot_date"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `performance_snapshot_` and a UUID v7, generated by the server."),
            col("eval_id", Kind::Text).references("evals", OnDelete::Cascade).doc("References `evals` (deleted with it)."),
            col("snapshot_date", Kind::Date).doc("`YYYY-MM-DD`; unique per eval."),
            col("accuracy", Kind::Real).nullable().range(0.0, 1.0).doc("0..1."),
            col("execution_count", Kind::Int).defaulted().min(0.0).doc("Default 0."),
            col("contradiction_count", Kind::Int).defaulted().min(0.0).doc("Default 0."),
            col("error_count", Kind::Int).defaulted().min(0.0).doc("Default 0."),
            col("pass_count", Kind::Int).defaulted().min(0.0).doc("Default 0."),
            col("fail_count", Kind::Int).defaulted().min(0.0).doc("Default 0."),
            col("prompt_distribution", Kind::Json).nullable().doc("Prompt distribution."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "performance_alerts",
        type_name: "PerformanceAlert",
        id_prefix: "performance_alert",
        doc: "An alert raised on an eval's performance. Scope: its eval.",
        view: false,
        append_only: false,
        scope: Scope::Parent { column: "eval_id", table: "evals" },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `performance_alert_` and a UUID v7, generated by the server."),
            col("eval_id", Kind::Text).references("evals", OnDelete::Cascade).doc("References `evals` (deleted with it)."),
            col("alert_type", Kind::Enum(crate::models::PerformanceAlertAlertType::VALUES)).doc("`accuracy_drop` | `contradiction_spike` | `error_spike` | `prompt_drift` | `insufficient_data`."),
            col("severity", Kind::Enum(crate::models::PerformanceAlertSeverity::VALUES)).defaulted().doc("`info` | `warning` | `critical`, default `warning`."),
            col("current_value", Kind::Real).nullable().doc("Current value."),
            col("threshold_value", Kind::Real).nullable().doc("Threshold value."),
            col("message", Kind::Text).doc("Message."),
            col("prompt_id", Kind::Text).nullable().references("system_prompts", OnDelete::SetNull).doc("References `system_prompts` (set to null when it is deleted)."),
            col("triggered_at", Kind::Timestamp).doc("Triggered at."),
            col("acknowledged_at", Kind::Timestamp).nullable().doc("Acknowledged at."),
            col("resolved_at", Kind::Timestamp).nullable().doc("Resolved at."),
            col("acknowledged_by", Kind::Text).nullable().references("users", OnDelete::SetNull).doc("References `users` (set to null when it is deleted)."),
            col("resolved_by", Kind::Text).nullable().references("users", OnDelete::SetNull).doc("References `users` (set to null when it is deleted)."),
            col("auto_action_taken", Kind::Enum(crate::models::PerformanceAlertAutoActionTaken::VALUES)).nullable().doc("`none` | `auto_refine_queued` | `auto_refine_completed` | `auto_refine_failed`."),
            col("auto_action_job_id", Kind::Text).nullable().references("jobs", OnDelete::SetNull).doc("References `jobs` (set to null when it is deleted)."),
            col("metadata", Kind::Json).nullable().doc("Metadata."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "refinement_history",
        type_name: "Refinement",
        id_prefix: "refinement",
        doc: "A refinement of an eval into a new version. Scope: its eval.",
        view: false,
        append_only: false,
        scope: Scope::Parent { column: "eval_id", table: "evals" },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `refinement_` and a UUID v7, generated by the server."),
            col("eval_id", Kind::Text).references("evals", OnDelete::Cascade).doc("References `evals` (deleted with it)."),
            col("parent_version", Kind::Int).nullable().doc("Parent version."),
            col("new_version", Kind::Int).doc("New version."),
            col("trigger_type", Kind::Enum(crate::models::RefinementTriggerType::VALUES)).doc("`manual` | `threshold` | `drift` | `scheduled`."),
            col("trigger_alert_id", Kind::Text).nullable().references("performance_alerts", OnDelete::SetNull).doc("References `performance_alerts` (set to null when it is deleted)."),
            col("trigger_metrics", Kind::Json).nullable().doc("Trigger metrics."),
            col("include_contradictions", Kind::Bool).defaulted().doc("Default true."),
            col("custom_instructions", Kind::Text).nullable().doc("Custom instructions."),
            col("result_accuracy", Kind::Real).nullable().doc("Result accuracy."),
            col("improvement_delta", Kind::Real).nullable().doc("Improvement delta."),
            col("status", Kind::Enum(crate::models::RefinementStatus::VALUES)).defaulted().doc("`pending` | `running` | `completed` | `failed` | `rejected` | `deployed`, default `pending`."),
            col("job_id", Kind::Text).nullable().references("jobs", OnDelete::SetNull).doc("References `jobs` (set to null when it is deleted)."),
            col("rejected_at", Kind::Timestamp).nullable().doc("Rejected at."),
            col("deployed_at", Kind::Timestamp).nullable().doc("Deployed at."),
            col("rejected_by", Kind::Text).nullable().references("users", OnDelete::SetNull).doc("References `users` (set to null when it is deleted)."),
            col("deployed_by", Kind::Text).nullable().references("users", OnDelete::SetNull).doc("References `users` (set to null when it is deleted)."),
            col("rejection_reason", Kind::Text).nullable().doc("Rejection reason."),
            col("completed_at", Kind::Timestamp).nullable().doc("Completed at."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "auto_refine_cooldowns",
        type_name: "AutoRefineCooldown",
        id_prefix: "auto_refine_cooldown",
        doc: "The auto-refinement cooldown of an eval, one per eval. Scope: its eval.",
        view: false,
        append_only: false,
        scope: Scope::Parent { column: "eval_id", table: "evals" },
        unique_keys: &[&["eval_id"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `auto_refine_cooldown_` and a UUID v7, generated by the server."),
            col("eval_id", Kind::Text).references("evals", OnDelete::Cascade).doc("References `evals` (deleted with it). Unique."),
            col("last_attempt_at", Kind::Timestamp).doc("Last attempt at."),
            col("next_allowed_at", Kind::Timestamp).doc("Next allowed at."),
            col("consecutive_failures", Kind::Int).defaulted().min(0.0).doc("Default 0."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "tasksets",
        type_name: "Taskset",
        id_prefix: "taskset",
        doc: "A set of tasks to run an agent on. Scope: its workspace.",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `taskset_` and a UUID v7, generated by the server."),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade).doc("References `workspaces` (deleted with it)."),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade).doc("References `agents` (deleted with it)."),
            col("name", Kind::Text).doc("Name."),
            col("description", Kind::Text).nullable().doc("Description."),
            col("status", Kind::Enum(crate::models::TasksetStatus::VALUES)).defaulted().doc("`active` | `archived`, default `active`."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "taskset_tasks",
        type_name: "TasksetTask",
        id_prefix: "taskset_task",
        doc: "A task of a taskset, deduplicated on its content hash. Scope: its taskset.",
        view: false,
        append_only: false,
        scope: Scope::Parent { column: "taskset_id", table: "tasksets" },
        unique_keys: &[&["taskset_id", "content_hash"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `taskset_task_` and a UUID v7, generated by the server."),
            col("taskset_id", Kind::Text).references("tasksets", OnDelete::Cascade).doc("References `tasksets` (deleted with it)."),
            col("user_message", Kind::Text).doc("User message."),
            col("expected_output", Kind::Text).nullable().doc("Expected output."),
            col("source", Kind::Enum(crate::models::TasksetTaskSource::VALUES)).doc("`trace` | `manual` | `imported`."),
            col("source_trace_id", Kind::Text).nullable().references("traces", OnDelete::SetNull).doc("References `traces` (set to null when it is deleted)."),
            col("content_hash", Kind::Text).doc("Unique per taskset (dedup); computed by the server: SHA-256 hex of `user_message`, a newline, and `expected_output` (empty when null)."),
            col("metadata", Kind::Json).nullable().doc("Metadata."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "taskset_runs",
        type_name: "TasksetRun",
        id_prefix: "taskset_run",
        doc: "A run of an agent over a taskset. Scope: its workspace.",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `taskset_run_` and a UUID v7, generated by the server."),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade).doc("References `workspaces` (deleted with it)."),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade).doc("References `agents` (deleted with it)."),
            col("taskset_id", Kind::Text).references("tasksets", OnDelete::Cascade).doc("References `tasksets` (deleted with it)."),
            col("status", Kind::Enum(crate::models::TasksetRunStatus::VALUES)).defaulted().doc("`queued` | `running` | `completed` | `partial` | `failed` | `cancelled`, default `queued`."),
            col("task_count", Kind::Int).min(0.0).doc("Task count."),
            col("model_provider", Kind::Text).nullable().doc("Model provider."),
            col("model_id", Kind::Text).nullable().doc("Model id."),
            col("config", Kind::Json).defaulted().doc("Default `{}`."),
            col("error", Kind::Text).nullable().doc("Error."),
            col("started_at", Kind::Timestamp).nullable().doc("Started at."),
            col("completed_at", Kind::Timestamp).nullable().doc("Completed at."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "taskset_run_results",
        type_name: "TasksetRunResult",
        id_prefix: "taskset_run_result",
        doc: "The result of one task in a taskset run. Scope: its run.",
        view: false,
        append_only: false,
        scope: Scope::Parent { column: "run_id", table: "taskset_runs" },
        unique_keys: &[&["run_id", "task_id"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `taskset_run_result_` and a UUID v7, generated by the server."),
            col("run_id", Kind::Text).references("taskset_runs", OnDelete::Cascade).doc("References `taskset_runs` (deleted with it)."),
            col("task_id", Kind::Text).references("taskset_tasks", OnDelete::Cascade).doc("References `taskset_tasks` (deleted with it)."),
            col("status", Kind::Enum(crate::models::TasksetRunResultStatus::VALUES)).doc("`pending` | `completed` | `failed` | `timeout`."),
            col("response", Kind::Text).nullable().doc("Response."),
            col("expected_output", Kind::Text).nullable().doc("Expected output."),
            col("score_reason", Kind::Text).nullable().doc("Score reason."),
            col("error", Kind::Text).nullable().doc("Error."),
            col("score", Kind::Real).nullable().range(0.0, 1.0).doc("0..1."),
            col("trace_id", Kind::Text).nullable().references("traces", OnDelete::SetNull).doc("References `traces` (set to null when it is deleted)."),
            col("execution_time_ms", Kind::Int).nullable().min(0.0).doc("Execution time ms."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "gepa_runs",
        type_name: "GepaRun",
        id_prefix: "gepa_run",
        doc: "A GEPA prompt-optimisation run. Scope: its workspace.",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `gepa_run_` and a UUID v7, generated by the server."),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade).doc("References `workspaces` (deleted with it)."),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade).doc("References `agents` (deleted with it)."),
            col("eval_id", Kind::Text).nullable().references("evals", OnDelete::SetNull).doc("References `evals` (set to null when it is deleted)."),
            col("seed_prompt", Kind::Text).doc("Seed prompt."),
            col("test_case_count", Kind::Int).min(0.0).doc("Test case count."),
            col("max_metric_calls", Kind::Int).defaulted().min(0.0).doc("Default 50."),
            col("parallelism", Kind::Int).defaulted().min(1.0).doc("Default 5."),
            col("status", Kind::Enum(crate::models::GepaRunStatus::VALUES)).defaulted().doc("`pending` | `running` | `completed` | `failed` | `cancelled`, default `pending`."),
            col("progress_metric_calls", Kind::Int).defaulted().min(0.0).doc("Default 0."),
            col("best_prompt", Kind::Text).nullable().doc("Best prompt."),
            col("best_score", Kind::Real).nullable().range(0.0, 1.0).doc("0..1."),
            col("total_candidates", Kind::Int).defaulted().min(0.0).doc("Default 0."),
            col("state_path", Kind::Text).nullable().doc("State path."),
            col("error", Kind::Text).nullable().doc("Error."),
            col("optimized_version_id", Kind::Text).nullable().references("agent_versions", OnDelete::SetNull).doc("References `agent_versions` (set to null when it is deleted)."),
            col("taskset_id", Kind::Text).nullable().references("tasksets", OnDelete::SetNull).doc("References `tasksets` (set to null when it is deleted)."),
            col("train_split", Kind::Real).defaulted().range(0.0, 1.0).doc("0..1, default 0.7."),
            col("val_split", Kind::Real).defaulted().range(0.0, 1.0).doc("0..1, default 0.3; train + val ≤ 1, the rest is the test split."),
            col("random_seed", Kind::Int).nullable().big().doc("Random seed."),
            col("started_at", Kind::Timestamp).nullable().doc("Started at."),
            col("completed_at", Kind::Timestamp).nullable().doc("Completed at."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "gepa_run_tasks",
        type_name: "GepaRunTask",
        id_prefix: "gepa_run_task",
        doc: "A task of a GEPA run with its split. Scope: its run.",
        view: false,
        append_only: false,
        scope: Scope::Parent { column: "run_id", table: "gepa_runs" },
        unique_keys: &[&["run_id", "task_id"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `gepa_run_task_` and a UUID v7, generated by the server."),
            col("run_id", Kind::Text).references("gepa_runs", OnDelete::Cascade).doc("References `gepa_runs` (deleted with it)."),
            col("task_id", Kind::Text).references("taskset_tasks", OnDelete::Cascade).doc("References `taskset_tasks` (deleted with it)."),
            col("split", Kind::Enum(crate::models::GepaRunTaskSplit::VALUES)).doc("`train` | `val` | `test`."),
            col("score", Kind::Real).nullable().range(0.0, 1.0).doc("0..1."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "rollout_batches",
        type_name: "RolloutBatch",
        id_prefix: "rollout_batch",
        doc: "A batch of rollouts of an agent with a system prompt. Scope: its workspace.",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `rollout_batch_` and a UUID v7, generated by the server."),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade).doc("References `workspaces` (deleted with it)."),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade).doc("References `agents` (deleted with it)."),
            col("system_prompt", Kind::Text).doc("System prompt."),
            col("task_count", Kind::Int).min(0.0).doc("Task count."),
            col("status", Kind::Enum(crate::models::RolloutBatchStatus::VALUES)).defaulted().doc("`queued` | `running` | `completed` | `partial` | `failed`, default `queued`."),
            col("config", Kind::Json).defaulted().doc("Default `{}`."),
            col("completed_at", Kind::Timestamp).nullable().doc("Completed at."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "rollout_results",
        type_name: "RolloutResult",
        id_prefix: "rollout_result",
        doc: "The result of one rollout (append-only). Scope: its batch.",
        view: false,
        append_only: true,
        scope: Scope::Parent { column: "batch_id", table: "rollout_batches" },
        unique_keys: &[&["batch_id", "task_id"]],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `rollout_result_` and a UUID v7, generated by the server."),
            col("batch_id", Kind::Text).references("rollout_batches", OnDelete::Cascade).doc("References `rollout_batches` (deleted with it)."),
            col("task_id", Kind::Text).doc("Task id."),
            col("status", Kind::Enum(crate::models::RolloutResultStatus::VALUES)).doc("`completed` | `failed` | `timeout`."),
            col("trace", Kind::Json).nullable().doc("Trace."),
            col("error", Kind::Text).nullable().doc("Error."),
            col("execution_time_ms", Kind::Int).nullable().min(0.0).doc("Execution time ms."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "playground_sessions",
        type_name: "PlaygroundSession",
        id_prefix: "playground_session",
        doc: "An interactive playground session with an agent version. Scope: its workspace.",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `playground_session_` and a UUID v7, generated by the server."),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade).doc("References `workspaces` (deleted with it)."),
            col("agent_id", Kind::Text).references("agents", OnDelete::Cascade).doc("References `agents` (deleted with it)."),
            col("agent_version_id", Kind::Text).references("agent_versions", OnDelete::Cascade).doc("References `agent_versions` (deleted with it)."),
            col("messages", Kind::Json).defaulted().doc("Default `[]`."),
            col("variables", Kind::Json).defaulted().doc("Default `{}`."),
            col("files", Kind::Json).defaulted().doc("Default `{}`."),
            col("model_provider", Kind::Enum(crate::models::PlaygroundSessionModelProvider::VALUES)).doc("`anthropic` | `openai` | `google`."),
            col("model_id", Kind::Text).doc("Model id."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "playground_steps",
        type_name: "PlaygroundStep",
        id_prefix: "playground_step",
        doc: "A step of a playground session (append-only). Scope: its session.",
        view: false,
        append_only: true,
        scope: Scope::Parent { column: "session_id", table: "playground_sessions" },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `playground_step_` and a UUID v7, generated by the server."),
            col("session_id", Kind::Text).references("playground_sessions", OnDelete::Cascade).doc("References `playground_sessions` (deleted with it)."),
            col("trace_id", Kind::Text).references("traces", OnDelete::Cascade).doc("References `traces` (deleted with it)."),
            col("step_index", Kind::Int).min(0.0).doc("Step index."),
            col("step_type", Kind::Enum(crate::models::PlaygroundStepStepType::VALUES)).doc("`llm_call` | `tool_call` | `tool_result`."),
            col("input", Kind::Json).nullable().doc("Input."),
            col("output", Kind::Json).nullable().doc("Output."),
            col("tool_args", Kind::Json).nullable().doc("Tool args."),
            col("tool_result", Kind::Json).nullable().doc("Tool result."),
            col("tool_name", Kind::Text).nullable().doc("Tool name."),
            col("tool_error", Kind::Text).nullable().doc("Tool error."),
            col("latency_ms", Kind::Int).nullable().min(0.0).doc("Latency ms."),
            col("tokens_input", Kind::Int).nullable().min(0.0).big().doc("Tokens input."),
            col("tokens_output", Kind::Int).nullable().min(0.0).big().doc("Tokens output."),
            col("timestamp", Kind::Timestamp).doc("Timestamp."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "workflows",
        type_name: "Workflow",
        id_prefix: "workflow",
        doc: "A workflow: a graph of nodes and edges. Scope: its workspace.",
        view: false,
        append_only: false,
        scope: Scope::Workspace("workspace_id"),
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `workflow_` and a UUID v7, generated by the server."),
            col("workspace_id", Kind::Text).references("workspaces", OnDelete::Cascade).doc("References `workspaces` (deleted with it)."),
            col("name", Kind::Text).doc("Name."),
            col("description", Kind::Text).nullable().doc("Description."),
            col("nodes", Kind::Json).doc("Array of `{id, type, data}`."),
            col("edges", Kind::Json).doc("Array of `{id, source, target}`; every source/target names a node."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "executions",
        type_name: "Execution",
        id_prefix: "execution",
        doc: "One run of a workflow. Scope: its workflow.",
        view: false,
        append_only: false,
        scope: Scope::Parent { column: "workflow_id", table: "workflows" },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `execution_` and a UUID v7, generated by the server."),
            col("workflow_id", Kind::Text).references("workflows", OnDelete::Cascade).doc("References `workflows` (deleted with it)."),
            col("user_id", Kind::Text).nullable().references("users", OnDelete::SetNull).doc("References `users` (set to null when it is deleted). Who started it."),
            col("status", Kind::Enum(crate::models::ExecutionStatus::VALUES)).defaulted().doc("`pending` | `running` | `paused` | `completed` | `failed` | `cancelled`, default `pending`."),
            col("data", Kind::Json).nullable().doc("Input."),
            col("result", Kind::Json).nullable().doc("Result."),
            col("error", Kind::Text).nullable().doc("Error."),
            col("started_at", Kind::Timestamp).nullable().doc("Started at."),
            col("completed_at", Kind::Timestamp).nullable().doc("Completed at."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "execution_steps",
        type_name: "ExecutionStep",
        id_prefix: "execution_step",
        doc: "One node's run inside a workflow execution. Scope: its execution.",
        view: false,
        append_only: false,
        scope: Scope::Parent { column: "execution_id", table: "executions" },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The row's id: `execution_step_` and a UUID v7, generated by the server."),
            col("execution_id", Kind::Text).references("executions", OnDelete::Cascade).doc("References `executions` (deleted with it)."),
            col("node_id", Kind::Text).doc("A node id of the workflow."),
            col("status", Kind::Enum(crate::models::ExecutionStepStatus::VALUES)).defaulted().doc("`pending` | `running` | `completed` | `failed` | `skipped`, default `pending`."),
            col("input", Kind::Json).nullable().doc("Input."),
            col("output", Kind::Json).nullable().doc("Output."),
            col("validation", Kind::Json).nullable().doc("Validation."),
            col("retry_count", Kind::Int).defaulted().min(0.0).doc("Default 0."),
            col("max_retries", Kind::Int).defaulted().min(0.0).doc("Default 3."),
            col("error", Kind::Text).nullable().doc("Error."),
            col("started_at", Kind::Timestamp).nullable().doc("Started at."),
            col("completed_at", Kind::Timestamp).nullable().doc("Completed at."),
            col("created_at", Kind::Timestamp).defaulted().doc("When the row was created; never changes."),
            col("updated_at", Kind::Timestamp).defaulted().doc("When the row last changed; stamped by the server on every update."),
        ],
    },
    Table {
        name: "eval_comparison",
        type_name: "EvalComparison",
        id_prefix: "eval_comparison",
        doc: "Every eval execution beside the human rating of its trace (a view of eval_executions left join feedback). Scope: its eval.",
        view: true,
        append_only: false,
        scope: Scope::Parent { column: "eval_id", table: "evals" },
        unique_keys: &[],
        columns: &[
            col("id", Kind::Id).doc("The id of the eval execution (the view's key)."),
            col("execution_id", Kind::Text).doc("The eval execution."),
            col("eval_id", Kind::Text).doc("The eval that made the prediction."),
            col("trace_id", Kind::Text).doc("The trace it judged."),
            col("predicted_result", Kind::Bool).nullable().doc("Pass / fail."),
            col("predicted_reason", Kind::Text).nullable().doc("Predicted reason."),
            col("execution_time_ms", Kind::Int).nullable().doc("Execution time ms."),
            col("execution_error", Kind::Text).nullable().doc("The execution's error."),
            col("executed_at", Kind::Timestamp).doc("Executed at."),
            col("feedback_id", Kind::Text).nullable().doc("The human rating, if any."),
            col("human_rating", Kind::Enum(crate::models::FeedbackRating::VALUES)).nullable().doc("`positive` | `negative` | `neutral`."),
            col("rating_detail", Kind::Text).nullable().doc("The annotator's notes."),
            col("is_contradiction", Kind::Bool).nullable().doc("Null without a rating or prediction; true when a positive rating met a fail or a negative rating a pass."),
        ],
    },
];
