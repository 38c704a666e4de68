//! Jobs and monitoring: row models (`Row`, `NewRow`) and the enums of their columns.

use super::prelude::*;

db_enum! {
    /// `jobs.type`.
    JobType {
        Import = "import",
        Generate = "generate",
        Execute = "execute",
        Monitor = "monitor",
        AutoRefine = "auto_refine",
        AgentDiscovery = "agent_discovery",
        TasksetRun = "taskset_run",
        Gepa = "gepa",
    }
}

db_enum! {
    /// `jobs.status`.
    JobStatus {
        Queued = "queued",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

db_enum! {
    /// `performance_alerts.alert_type`.
    PerformanceAlertAlertType {
        AccuracyDrop = "accuracy_drop",
        ContradictionSpike = "contradiction_spike",
        ErrorSpike = "error_spike",
        PromptDrift = "prompt_drift",
        InsufficientData = "insufficient_data",
    }
}

db_enum! {
    /// `performance_alerts.severity`.
    PerformanceAlertSeverity {
        Info = "info",
        Warning = "warning",
        Critical = "critical",
    }
}

db_enum! {
    /// `performance_alerts.auto_action_taken`.
    PerformanceAlertAutoActionTaken {
        None = "none",
        AutoRefineQueued = "auto_refine_queued",
        AutoRefineCompleted = "auto_refine_completed",
        AutoRefineFailed = "auto_refine_failed",
    }
}

db_enum! {
    /// `refinement_history.trigger_type`.
    RefinementTriggerType {
        Manual = "manual",
        Threshold = "threshold",
        Drift = "drift",
        Scheduled = "scheduled",
    }
}

db_enum! {
    /// `refinement_history.status`.
    RefinementStatus {
        Pending = "pending",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Rejected = "rejected",
        Deployed = "deployed",
    }
}

rows! {
    /// Background work with progress. Scope: its workspace.
    job => jobs {
        scope {
            /// References `workspaces` (deleted with it).
            workspace_id: String,
        }
        /// `import` | `generate` | `execute` | `monitor` | `auto_refine` | `agent_discovery` | `taskset_run` | `gepa`.
        r#type: JobType,
        /// `queued` | `running` | `completed` | `failed` | `cancelled`, default `queued`; moves queued → running → completed / failed / cancelled, queued → cancelled, and running → queued only as a retry (increments `retry_count`, sets `next_retry_at`, writes a `job_retry_history` row; refused once `retry_count` = `max_retries`).
        status: JobStatus,
        /// 0..100, default 0; never decreases within one attempt.
        progress: i64,
        /// The job's input context.
        metadata: Option<Json>,
        /// Result.
        result: Option<Json>,
        /// Error.
        error: Option<String>,
        /// Error category.
        error_category: Option<String>,
        /// Default 0.
        retry_count: i64,
        /// Default 5.
        max_retries: i64,
        /// Last error at.
        last_error_at: Option<Timestamp>,
        /// Next retry at.
        next_retry_at: Option<Timestamp>,
        /// Default 0.
        priority: i64,
        /// References `agents` (set to null when it is deleted).
        agent_id: Option<String>,
        /// References `agent_versions` (set to null when it is deleted).
        agent_version_id: Option<String>,
        /// Trigger event.
        trigger_event: Option<String>,
        /// Trigger threshold.
        trigger_threshold: Option<String>,
        /// Started at.
        started_at: Option<Timestamp>,
        /// Completed at.
        completed_at: Option<Timestamp>,
    }
}

rows! {
    /// A retry of a job (append-only). Scope: its job.
    job_retry => job_retry_history {
        scope {
            /// References `jobs` (deleted with it).
            job_id: String,
        }
        /// Attempt.
        attempt: i64,
        /// Error.
        error: String,
        /// Error category.
        error_category: String,
        /// Delay ms.
        delay_ms: i64,
    }
}

rows! {
    /// A day's health figures of an eval. Scope: its eval.
    performance_snapshot => performance_snapshots {
        scope {
            /// References `evals` (deleted with it).
            eval_id: String,
        }
        /// `YYYY-MM-DD`; unique per eval.
        snapshot_date: String,
        /// 0..1.
        accuracy: Option<f64>,
        /// Default 0.
        execution_count: i64,
        /// Default 0.
        contradiction_count: i64,
        /// Default 0.
        error_count: i64,
        /// Default 0.
        pass_count: i64,
        /// Default 0.
        fail_count: i64,
        /// Prompt distribution.
        prompt_distribution: Option<Json>,
    }
}

rows! {
    /// An alert raised on an eval's performance. Scope: its eval.
    performance_alert => performance_alerts {
        scope {
            /// References `evals` (deleted with it).
            eval_id: String,
        }
        /// `accuracy_drop` | `contradiction_spike` | `error_spike` | `prompt_drift` | `insufficient_data`.
        alert_type: PerformanceAlertAlertType,
        /// `info` | `warning` | `critical`, default `warning`.
        severity: PerformanceAlertSeverity,
        /// Current value.
        current_value: Option<f64>,
        /// Threshold value.
        threshold_value: Option<f64>,
        /// Message.
        message: String,
        /// References `system_prompts` (set to null when it is deleted).
        prompt_id: Option<String>,
        /// Triggered at.
        triggered_at: Timestamp,
        /// Acknowledged at.
        acknowledged_at: Option<Timestamp>,
        /// Resolved at.
        resolved_at: Option<Timestamp>,
        /// References `users` (set to null when it is deleted).
        acknowledged_by: Option<String>,
        /// References `users` (set to null when it is deleted).
        resolved_by: Option<String>,
        /// `none` | `auto_refine_queued` | `auto_refine_completed` | `auto_refine_failed`.
        auto_action_taken: Option<PerformanceAlertAutoActionTaken>,
        /// References `jobs` (set to null when it is deleted).
        auto_action_job_id: Option<String>,
        /// Metadata.
        metadata: Option<Json>,
    }
}

rows! {
    /// A refinement of an eval into a new version. Scope: its eval.
    refinement => refinement_history {
        scope {
            /// References `evals` (deleted with it).
            eval_id: String,
        }
        /// Parent version.
        parent_version: Option<i64>,
        /// New version.
        new_version: i64,
        /// `manual` | `threshold` | `drift` | `scheduled`.
        trigger_type: RefinementTriggerType,
        /// References `performance_alerts` (set to null when it is deleted).
        trigger_alert_id: Option<String>,
        /// Trigger metrics.
        trigger_metrics: Option<Json>,
        /// Default true.
        include_contradictions: bool,
        /// Custom instructions.
        custom_instructions: Option<String>,
        /// Result accuracy.
        result_accuracy: Option<f64>,
        /// Improvement delta.
        improvement_delta: Option<f64>,
        /// `pending` | `running` | `completed` | `failed` | `rejected` | `deployed`, default `pending`.
        status: RefinementStatus,
        /// References `jobs` (set to null when it is deleted).
        job_id: Option<String>,
        /// Rejected at.
        rejected_at: Option<Timestamp>,
        /// Deployed at.
        deployed_at: Option<Timestamp>,
        /// References `users` (set to null when it is deleted).
        rejected_by: Option<String>,
        /// References `users` (set to null when it is deleted).
        deployed_by: Option<String>,
        /// Rejection reason.
        rejection_reason: Option<String>,
        /// Completed at.
        completed_at: Option<Timestamp>,
    }
}

rows! {
    /// The auto-refinement cooldown of an eval, one per eval. Scope: its eval.
    auto_refine_cooldown => auto_refine_cooldowns {
        scope {
            /// References `evals` (deleted with it). Unique.
            eval_id: String,
        }
        /// Last attempt at.
        last_attempt_at: Timestamp,
        /// Next allowed at.
        next_allowed_at: Timestamp,
        /// Default 0.
        consecutive_failures: i64,
    }
}
