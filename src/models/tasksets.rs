//! Tasksets, GEPA runs and rollouts: row models (`Row`, `NewRow`) and the enums of their columns.

use super::prelude::*;

db_enum! {
    /// `tasksets.status`.
    TasksetStatus {
        Active = "active",
        Archived = "archived",
    }
}

db_enum! {
    /// `taskset_tasks.source`.
    TasksetTaskSource {
        Trace = "trace",
        Manual = "manual",
        Imported = "imported",
    }
}

db_enum! {
    /// `taskset_runs.status`.
    TasksetRunStatus {
        Queued = "queued",
        Running = "running",
        Completed = "completed",
        Partial = "partial",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

db_enum! {
    /// `taskset_run_results.status`.
    TasksetRunResultStatus {
        Pending = "pending",
        Completed = "completed",
        Failed = "failed",
        Timeout = "timeout",
    }
}

db_enum! {
    /// `gepa_runs.status`.
    GepaRunStatus {
        Pending = "pending",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

db_enum! {
    /// `gepa_run_tasks.split`.
    GepaRunTaskSplit {
        Train = "train",
        Val = "val",
        Test = "test",
    }
}

db_enum! {
    /// `rollout_batches.status`.
    RolloutBatchStatus {
        Queued = "queued",
        Running = "running",
        Completed = "completed",
        Partial = "partial",
        Failed = "failed",
    }
}

db_enum! {
    /// `rollout_results.status`.
    RolloutResultStatus {
        Completed = "completed",
        Failed = "failed",
        Timeout = "timeout",
    }
}

rows! {
    /// A set of tasks to run an agent on. Scope: its workspace.
    taskset => tasksets {
        scope {
            /// References `workspaces` (deleted with it).
            workspace_id: String,
        }
        /// References `agents` (deleted with it).
        agent_id: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// `active` | `archived`, default `active`.
        status: TasksetStatus,
    }
}

rows! {
    /// A task of a taskset, deduplicated on its content hash. Scope: its taskset.
    taskset_task => taskset_tasks {
        scope {
            /// References `tasksets` (deleted with it).
            taskset_id: String,
        }
        /// User message.
        user_message: String,
        /// Expected output.
        expected_output: Option<String>,
        /// `trace` | `manual` | `imported`.
        source: TasksetTaskSource,
        /// References `traces` (set to null when it is deleted).
        source_trace_id: Option<String>,
        /// Unique per taskset (dedup); computed by the server: SHA-256 hex of `user_message`, a newline, and `expected_output` (empty when null).
        content_hash: String,
        /// Metadata.
        metadata: Option<Json>,
    }
}

rows! {
    /// A run of an agent over a taskset. Scope: its workspace.
    taskset_run => taskset_runs {
        scope {
            /// References `workspaces` (deleted with it).
            workspace_id: String,
        }
        /// References `agents` (deleted with it).
        agent_id: String,
        /// References `tasksets` (deleted with it).
        taskset_id: String,
        /// `queued` | `running` | `completed` | `partial` | `failed` | `cancelled`, default `queued`.
        status: TasksetRunStatus,
        /// Task count.
        task_count: i64,
        /// Model provider.
        model_provider: Option<String>,
        /// Model id.
        model_id: Option<String>,
        /// Default `{}`.
        config: Json,
        /// Error.
        error: Option<String>,
        /// Started at.
        started_at: Option<Timestamp>,
        /// Completed at.
        completed_at: Option<Timestamp>,
    }
}

rows! {
    /// The result of one task in a taskset run. Scope: its run.
    taskset_run_result => taskset_run_results {
        scope {
            /// References `taskset_runs` (deleted with it).
            run_id: String,
        }
        /// References `taskset_tasks` (deleted with it).
        task_id: String,
        /// `pending` | `completed` | `failed` | `timeout`.
        status: TasksetRunResultStatus,
        /// Response.
        response: Option<String>,
        /// Expected output.
        expected_output: Option<String>,
        /// Score reason.
        score_reason: Option<String>,
        /// Error.
        error: Option<String>,
        /// 0..1.
        score: Option<f64>,
        /// References `traces` (set to null when it is deleted).
        trace_id: Option<String>,
        /// Execution time ms.
        execution_time_ms: Option<i64>,
    }
}

rows! {
    /// A GEPA prompt-optimisation run. Scope: its workspace.
    gepa_run => gepa_runs {
        scope {
            /// References `workspaces` (deleted with it).
            workspace_id: String,
        }
        /// References `agents` (deleted with it).
        agent_id: String,
        /// References `evals` (set to null when it is deleted).
        eval_id: Option<String>,
        /// Seed prompt.
        seed_prompt: String,
        /// Test case count.
        test_case_count: i64,
        /// Default 50.
        max_metric_calls: i64,
        /// Default 5.
        parallelism: i64,
        /// `pending` | `running` | `completed` | `failed` | `cancelled`, default `pending`.
        status: GepaRunStatus,
        /// Default 0.
        progress_metric_calls: i64,
        /// Best prompt.
        best_prompt: Option<String>,
        /// 0..1.
        best_score: Option<f64>,
        /// Default 0.
        total_candidates: i64,
        /// State path.
        state_path: Option<String>,
        /// Error.
        error: Option<String>,
        /// References `agent_versions` (set to null when it is deleted).
        optimized_version_id: Option<String>,
        /// References `tasksets` (set to null when it is deleted).
        taskset_id: Option<String>,
        /// 0..1, default 0.7.
        train_split: f64,
        /// 0..1, default 0.3; train + val ≤ 1, the rest is the test split.
        val_split: f64,
        /// Random seed.
        random_seed: Option<i64>,
        /// Started at.
        started_at: Option<Timestamp>,
        /// Completed at.
        completed_at: Option<Timestamp>,
    }
}

rows! {
    /// A task of a GEPA run with its split. Scope: its run.
    gepa_run_task => gepa_run_tasks {
        scope {
            /// References `gepa_runs` (deleted with it).
            run_id: String,
        }
        /// References `taskset_tasks` (deleted with it).
        task_id: String,
        /// `train` | `val` | `test`.
        split: GepaRunTaskSplit,
        /// 0..1.
        score: Option<f64>,
    }
}

rows! {
    /// A batch of rollouts of an agent with a system prompt. Scope: its workspace.
    rollout_batch => rollout_batches {
        scope {
            /// References `workspaces` (deleted with it).
            workspace_id: String,
        }
        /// References `agents` (deleted with it).
        agent_id: String,
        /// System prompt.
        system_prompt: String,
        /// Task count.
        task_count: i64,
        /// `queued` | `running` | `completed` | `partial` | `failed`, default `queued`.
        status: RolloutBatchStatus,
        /// Default `{}`.
        config: Json,
        /// Completed at.
        completed_at: Option<Timestamp>,
    }
}

rows! {
    /// The result of one rollout (append-only). Scope: its batch.
    rollout_result => rollout_results {
        scope {
            /// References `rollout_batches` (deleted with it).
            batch_id: String,
        }
        /// Task id.
        task_id: String,
        /// `completed` | `failed` | `timeout`.
        status: RolloutResultStatus,
        /// Trace.
        trace: Option<Json>,
        /// Error.
        error: Option<String>,
        /// Execution time ms.
        execution_time_ms: Option<i64>,
    }
}
