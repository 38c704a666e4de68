//! Integrations, traces and human feedback: row models (`Row`, `NewRow`) and the enums of their columns.

use super::prelude::*;

db_enum! {
    /// `integrations.platform`.
    IntegrationPlatform {
        Langfuse = "langfuse",
        Langsmith = "langsmith",
        Openai = "openai",
        Playground = "playground",
        Taskset = "taskset",
    }
}

db_enum! {
    /// `integrations.status`.
    IntegrationStatus {
        Active = "active",
        Error = "error",
    }
}

db_enum! {
    /// `traces.source`.
    TraceSource {
        Langfuse = "langfuse",
        Langsmith = "langsmith",
        Openai = "openai",
        Playground = "playground",
        Taskset = "taskset",
    }
}

db_enum! {
    /// `traces.assignment_status`.
    TraceAssignmentStatus {
        Unassigned = "unassigned",
        Assigned = "assigned",
        Orphaned = "orphaned",
    }
}

db_enum! {
    /// `feedback.rating`.
    FeedbackRating {
        Positive = "positive",
        Negative = "negative",
        Neutral = "neutral",
    }
}

db_enum! {
    /// `task_metadata.difficulty`.
    TaskMetadataDifficulty {
        Easy = "easy",
        Medium = "medium",
        Hard = "hard",
    }
}

rows! {
    /// A connection to a trace platform (Langfuse, LangSmith, OpenAI, …). Scope: its workspace.
    integration => integrations {
        scope {
            /// References `workspaces` (deleted with it).
            workspace_id: String,
        }
        /// Unique per workspace.
        name: String,
        /// `langfuse` | `langsmith` | `openai` | `playground` | `taskset`.
        platform: IntegrationPlatform,
        /// Encrypted at rest; never readable through the API.
        api_key_encrypted: String,
        /// Self-hosted instances.
        base_url: Option<String>,
        /// Config.
        config: Option<Json>,
        /// `active` | `error`, default `active`.
        status: IntegrationStatus,
        /// Last error while status = error.
        error_message: Option<String>,
        /// Last synced at.
        last_synced_at: Option<Timestamp>,
    }
}

rows! {
    /// An imported, normalised agent run. Scope: its workspace.
    trace => traces {
        scope {
            /// References `workspaces` (deleted with it).
            workspace_id: String,
        }
        /// References `integrations` (deleted with it). Null for playground/taskset traces.
        integration_id: Option<String>,
        /// The id on the source platform.
        trace_id: String,
        /// `langfuse` | `langsmith` | `openai` | `playground` | `taskset`.
        source: TraceSource,
        /// When the run happened.
        timestamp: Timestamp,
        /// Metadata.
        metadata: Option<Json>,
        /// Array of steps.
        steps: Json,
        /// OpenInference spans.
        spans: Option<Json>,
        /// Total tokens.
        total_tokens: Option<i64>,
        /// Total duration ms.
        total_duration_ms: Option<i64>,
        /// Span count.
        span_count: Option<i64>,
        /// Raw data.
        raw_data: Option<Json>,
        /// First 200 characters, computed on import.
        input_preview: Option<String>,
        /// First 200 characters, computed on import.
        output_preview: Option<String>,
        /// Default 0, computed on import.
        step_count: i64,
        /// Default false, computed on import.
        has_errors: bool,
        /// References `agent_versions` (set to null when it is deleted).
        agent_version_id: Option<String>,
        /// `unassigned` | `assigned` | `orphaned`, default `unassigned`.
        assignment_status: TraceAssignmentStatus,
        /// References `system_prompts` (set to null when it is deleted).
        system_prompt_id: Option<String>,
        /// Imported at.
        imported_at: Timestamp,
    }
}

rows! {
    /// A summary of a trace, one per trace. Scope: its trace.
    trace_summary => trace_summaries {
        scope {
            /// References `traces` (deleted with it). Unique.
            trace_id: String,
        }
        /// Summary.
        summary: String,
        /// Array of strings.
        key_behaviors: Option<Json>,
    }
}

rows! {
    /// A distinct system prompt seen in traces, by hash. Scope: its workspace.
    system_prompt => system_prompts {
        scope {
            /// References `workspaces` (deleted with it).
            workspace_id: String,
        }
        /// Agent name.
        agent_name: String,
        /// Unique per workspace.
        prompt_hash: String,
        /// Content.
        content: String,
        /// Metadata.
        metadata: Option<Json>,
        /// First seen at.
        first_seen_at: Timestamp,
        /// Last seen at.
        last_seen_at: Timestamp,
        /// Default 1.
        trace_count: i64,
    }
}

rows! {
    /// The human rating of a trace, one per trace. Scope: its trace's workspace, which the row carries.
    feedback => feedback {
        scope {
            /// References `traces` (deleted with it). Unique.
            trace_id: String,
        }
        /// References `agents` (set to null when it is deleted).
        agent_id: Option<String>,
        /// `positive` | `negative` | `neutral`.
        rating: FeedbackRating,
        /// The annotator's notes.
        rating_detail: Option<String>,
        @after {
            /// References `workspaces` (deleted with it): its trace's workspace, set by the server.
            workspace_id: String,
        }
    }
}

rows! {
    /// The task a trace performed, extracted for evaluation, one per trace. Scope: its trace.
    task_metadata => task_metadata {
        scope {
            /// References `traces` (deleted with it). Unique.
            trace_id: String,
        }
        /// User message.
        user_message: String,
        /// Expected output.
        expected_output: Option<String>,
        /// Expected action.
        expected_action: Option<String>,
        /// Array of strings.
        success_criteria: Option<Json>,
        /// Task type.
        task_type: Option<String>,
        /// `easy` | `medium` | `hard`.
        difficulty: Option<TaskMetadataDifficulty>,
        /// Domain.
        domain: Option<String>,
        /// Custom metadata.
        custom_metadata: Option<Json>,
    }
}

rows! {
    /// A trace similar to a task (append-only). Scope: its task metadata.
    task_similar_trace => task_similar_traces {
        scope {
            /// References `task_metadata` (deleted with it).
            task_metadata_id: String,
        }
        /// References `traces` (deleted with it). Same workspace.
        similar_trace_id: String,
        /// 0..1.
        similarity_score: f64,
        /// 0..1.
        human_score: Option<f64>,
    }
}

rows! {
    /// Human feedback on a trace paired with a task (append-only). Scope: its task metadata.
    task_feedback_pair => task_feedback_pairs {
        scope {
            /// References `task_metadata` (deleted with it).
            task_metadata_id: String,
        }
        /// References `traces` (deleted with it). Same workspace.
        feedback_trace_id: String,
        /// Human feedback.
        human_feedback: String,
        /// 0..1.
        human_score: Option<f64>,
    }
}
