//! Agents, functions and tools: row models (`Row`, `NewRow`) and the enums of their columns.

use super::prelude::*;

db_enum! {
    /// `agents.status`.
    AgentStatus {
        Discovered = "discovered",
        Confirmed = "confirmed",
        Archived = "archived",
    }
}

db_enum! {
    /// `agent_versions.source`.
    AgentVersionSource {
        Discovered = "discovered",
        Manual = "manual",
        AiImproved = "ai_improved",
    }
}

db_enum! {
    /// `agent_versions.status`.
    AgentVersionStatus {
        Candidate = "candidate",
        Active = "active",
        Rejected = "rejected",
        Archived = "archived",
    }
}

db_enum! {
    /// `functions.type`.
    FunctionType {
        TemplateExtractor = "template_extractor",
        TemplateInjector = "template_injector",
        Eval = "eval",
    }
}

db_enum! {
    /// `functions.status`.
    FunctionStatus {
        Active = "active",
        Archived = "archived",
        Failed = "failed",
    }
}

db_enum! {
    /// `agent_functions.role`.
    AgentFunctionRole {
        Extractor = "extractor",
        Injector = "injector",
    }
}

db_enum! {
    /// `tools.category`.
    ToolCategory {
        General = "general",
        Code = "code",
        Filesystem = "filesystem",
        Email = "email",
    }
}

rows! {
    /// An agent discovered in traces or defined by hand. Scope: its workspace.
    agent => agents {
        scope {
            /// References `workspaces` (deleted with it).
            workspace_id: String,
        }
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// `discovered` | `confirmed` | `archived`, default `discovered`.
        status: AgentStatus,
        /// References `agent_versions` (set to null when it is deleted). A version of this agent.
        active_version_id: Option<String>,
        /// References `evals` (set to null when it is deleted). An eval of this agent.
        active_eval_id: Option<String>,
    }
}

rows! {
    /// A version of an agent's prompt template. Scope: its agent.
    agent_version => agent_versions {
        scope {
            /// References `agents` (deleted with it).
            agent_id: String,
        }
        /// Unique per agent, assigned by the server as max+1 when omitted.
        version: i64,
        /// Prompt template.
        prompt_template: String,
        /// Variables.
        variables: Option<Json>,
        /// `discovered` | `manual` | `ai_improved`.
        source: AgentVersionSource,
        /// References `agent_versions` (set to null when it is deleted).
        parent_version_id: Option<String>,
        /// 0..1.
        accuracy: Option<f64>,
        /// `candidate` | `active` | `rejected` | `archived`, default `candidate`.
        status: AgentVersionStatus,
    }
}

rows! {
    /// A generated function (template extractor, injector or eval). Scope: its workspace.
    function => functions {
        scope {
            /// References `workspaces` (deleted with it).
            workspace_id: String,
        }
        /// `template_extractor` | `template_injector` | `eval`.
        r#type: FunctionType,
        /// Name.
        name: String,
        /// Code.
        code: String,
        /// Input schema.
        input_schema: Option<Json>,
        /// Output schema.
        output_schema: Option<Json>,
        /// Model used.
        model_used: Option<String>,
        /// References `functions` (set to null when it is deleted).
        parent_function_id: Option<String>,
        /// `active` | `archived` | `failed`, default `active`.
        status: FunctionStatus,
    }
}

rows! {
    /// Links an agent to its extractor and injector functions (one per role). Scope: its agent.
    agent_function => agent_functions {
        scope {
            /// References `agents` (deleted with it).
            agent_id: String,
        }
        /// References `functions` (deleted with it). Same workspace.
        function_id: String,
        /// `extractor` | `injector`.
        role: AgentFunctionRole,
    }
}

rows! {
    /// A tool in the global registry: readable by everyone, written by server admins.
    tool => tools {
        scope {
        }
        /// Unique.
        name: String,
        /// Description.
        description: String,
        /// JSON Schema of the tool's arguments.
        parameters_schema: Json,
        /// Handler key.
        handler_key: String,
        /// `general` | `code` | `filesystem` | `email`, default `general`.
        category: ToolCategory,
    }
}

rows! {
    /// Links an agent to a tool it may call. Scope: its agent.
    agent_tool => agent_tools {
        scope {
            /// References `agents` (deleted with it).
            agent_id: String,
        }
        /// References `tools` (deleted with it).
        tool_id: String,
        /// Config.
        config: Option<Json>,
    }
}
