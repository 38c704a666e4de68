//! Workflow engine: row models (`Row`, `NewRow`) and the enums of their columns.

use super::prelude::*;

db_enum! {
    /// `executions.status`.
    ExecutionStatus {
        Pending = "pending",
        Running = "running",
        Paused = "paused",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

db_enum! {
    /// `execution_steps.status`.
    ExecutionStepStatus {
        Pending = "pending",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Skipped = "skipped",
    }
}

rows! {
    /// A workflow: a graph of nodes and edges. Scope: its workspace.
    workflow => workflows {
        scope {
            /// References `workspaces` (deleted with it).
            workspace_id: String,
        }
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// Array of `{id, type, data}`.
        nodes: Json,
        /// Array of `{id, source, target}`; every source/target names a node.
        edges: Json,
    }
}

rows! {
    /// One run of a workflow. Scope: its workflow.
    execution => executions {
        scope {
            /// References `workflows` (deleted with it).
            workflow_id: String,
        }
        /// References `users` (set to null when it is deleted). Who started it.
        user_id: Option<String>,
        /// `pending` | `running` | `paused` | `completed` | `failed` | `cancelled`, default `pending`.
        status: ExecutionStatus,
        /// Input.
        data: Option<Json>,
        /// Result.
        result: Option<Json>,
        /// Error.
        error: Option<String>,
        /// Started at.
        started_at: Option<Timestamp>,
        /// Completed at.
        completed_at: Option<Timestamp>,
    }
}

rows! {
    /// One node's run inside a workflow execution. Scope: its execution.
    execution_step => execution_steps {
        scope {
            /// References `executions` (deleted with it).
            execution_id: String,
        }
        /// A node id of the workflow.
        node_id: String,
        /// `pending` | `running` | `completed` | `failed` | `skipped`, default `pending`.
        status: ExecutionStepStatus,
        /// Input.
        input: Option<Json>,
        /// Output.
        output: Option<Json>,
        /// Validation.
        validation: Option<Json>,
        /// Default 0.
        retry_count: i64,
        /// Default 3.
        max_retries: i64,
        /// Error.
        error: Option<String>,
        /// Started at.
        started_at: Option<Timestamp>,
        /// Completed at.
        completed_at: Option<Timestamp>,
    }
}
