//! Playground: row models (`Row`, `NewRow`) and the enums of their columns.

use super::prelude::*;

db_enum! {
    /// `playground_sessions.model_provider`.
    PlaygroundSessionModelProvider {
        Anthropic = "anthropic",
        Openai = "openai",
        Google = "google",
    }
}

db_enum! {
    /// `playground_steps.step_type`.
    PlaygroundStepStepType {
        LlmCall = "llm_call",
        ToolCall = "tool_call",
        ToolResult = "tool_result",
    }
}

rows! {
    /// An interactive playground session with an agent version. Scope: its workspace.
    playground_session => playground_sessions {
        scope {
            /// References `workspaces` (deleted with it).
            workspace_id: String,
        }
        /// References `agents` (deleted with it).
        agent_id: String,
        /// References `agent_versions` (deleted with it).
        agent_version_id: String,
        /// Default `[]`.
        messages: Json,
        /// Default `{}`.
        variables: Json,
        /// Default `{}`.
        files: Json,
        /// `anthropic` | `openai` | `google`.
        model_provider: PlaygroundSessionModelProvider,
        /// Model id.
        model_id: String,
    }
}

rows! {
    /// A step of a playground session (append-only). Scope: its session.
    playground_step => playground_steps {
        scope {
            /// References `playground_sessions` (deleted with it).
            session_id: String,
        }
        /// References `traces` (deleted with it).
        trace_id: String,
        /// Step index.
        step_index: i64,
        /// `llm_call` | `tool_call` | `tool_result`.
        step_type: PlaygroundStepStepType,
        /// Input.
        input: Option<Json>,
        /// Output.
        output: Option<Json>,
        /// Tool args.
        tool_args: Option<Json>,
        /// Tool result.
        tool_result: Option<Json>,
        /// Tool name.
        tool_name: Option<String>,
        /// Tool error.
        tool_error: Option<String>,
        /// Latency ms.
        latency_ms: Option<i64>,
        /// Tokens input.
        tokens_input: Option<i64>,
        /// Tokens output.
        tokens_output: Option<i64>,
        /// Timestamp.
        timestamp: Timestamp,
    }
}
