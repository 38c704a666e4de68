//! Evals: row models (`Row`, `NewRow`) and the enums of their columns.

use super::prelude::*;

db_enum! {
    /// `evals.status`.
    EvalStatus {
        Draft = "draft",
        Candidate = "candidate",
        Testing = "testing",
        Active = "active",
        Archived = "archived",
    }
}

rows! {
    /// A generated Python eval function, versioned per agent. Scope: its agent.
    eval => evals {
        scope {
            /// References `agents` (deleted with it).
            agent_id: String,
        }
        /// Unique per agent, max+1 when omitted.
        version: i64,
        /// References `evals` (set to null when it is deleted). Refinement chain.
        parent_eval_id: Option<String>,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// Code.
        code: String,
        /// Model used.
        model_used: Option<String>,
        /// 0..1.
        accuracy: Option<f64>,
        /// Array of trace ids.
        training_trace_ids: Option<Json>,
        /// Generation prompt.
        generation_prompt: Option<String>,
        /// Test results.
        test_results: Option<Json>,
        /// Default 0; always equal to the eval's executions and to its rows with `is_contradiction` true in `eval_comparison`: every write that can change them (recording or deleting executions; creating, changing or deleting a rating; deleting traces, directly or by cascade) recomputes them in the same transaction, or triggers maintain them.
        execution_count: i64,
        /// Default 0; always equal to the eval's executions and to its rows with `is_contradiction` true in `eval_comparison`: every write that can change them (recording or deleting executions; creating, changing or deleting a rating; deleting traces, directly or by cascade) recomputes them in the same transaction, or triggers maintain them.
        contradiction_count: i64,
        /// `draft` | `candidate` | `testing` | `active` | `archived`, default `draft`.
        status: EvalStatus,
        /// Default false.
        auto_execute_enabled: bool,
        /// Default false.
        auto_refine_enabled: bool,
        /// Monitoring thresholds.
        monitoring_thresholds: Option<Json>,
        /// -1..1.
        cohen_kappa: Option<f64>,
        /// 0..1 each.
        f1_score: Option<f64>,
        /// 0..1 each.
        precision: Option<f64>,
        /// 0..1 each.
        recall: Option<f64>,
        /// E.g. correctness, efficiency.
        variation: Option<String>,
        /// 0..1.
        agreement_rate: Option<f64>,
        /// Confusion matrix.
        confusion_matrix: Option<Json>,
        /// Array.
        per_trace_results: Option<Json>,
        /// Total cost usd.
        total_cost_usd: Option<f64>,
        /// Avg duration ms.
        avg_duration_ms: Option<f64>,
        /// Set when status becomes `active`.
        activated_at: Option<Timestamp>,
    }
}

rows! {
    /// A prediction of an eval on a trace (append-only). Scope: its eval.
    eval_execution => eval_executions {
        scope {
            /// References `evals` (deleted with it).
            eval_id: String,
        }
        /// References `traces` (deleted with it). Same workspace.
        trace_id: String,
        /// Pass / fail.
        predicted_result: Option<bool>,
        /// Predicted reason.
        predicted_reason: Option<String>,
        /// Execution time ms.
        execution_time_ms: Option<i64>,
        /// Error.
        error: Option<String>,
        /// Stdout.
        stdout: Option<String>,
        /// Stderr.
        stderr: Option<String>,
        /// 0..1.
        score: Option<f64>,
        /// Feedback.
        feedback: Option<String>,
        /// Success.
        success: Option<bool>,
        /// Llm calls.
        llm_calls: Option<i64>,
        /// Cache hits.
        cache_hits: Option<i64>,
        /// Llm cost usd.
        llm_cost_usd: Option<f64>,
        /// Executed at.
        executed_at: Timestamp,
    }
}

rows! {
    /// A cross-validation result of an eval (append-only). Scope: its eval.
    eval_cv_result => eval_cv_results {
        scope {
            /// References `evals` (deleted with it).
            eval_id: String,
        }
        /// Default 5.
        k_folds: i64,
        /// 0..1 each.
        mean_accuracy: Option<f64>,
        /// 0..1 each.
        mean_f1: Option<f64>,
        /// 0..1 each.
        mean_agreement_rate: Option<f64>,
        /// -1..1.
        mean_kappa: Option<f64>,
        /// ≥ 0.
        std_accuracy: Option<f64>,
        /// ≥ 0.
        std_kappa: Option<f64>,
        /// Is stable.
        is_stable: Option<bool>,
        /// Array.
        fold_results: Option<Json>,
    }
}

rows! {
    /// A cached LLM response used by evals. Global, server admins only.
    eval_llm_cache_entry => eval_llm_cache {
        scope {
        }
        /// SHA-256 of prompt and model.
        prompt_hash: String,
        /// Model.
        model: String,
        /// Response text.
        response_text: String,
        /// Tokens input.
        tokens_input: Option<i64>,
        /// Tokens output.
        tokens_output: Option<i64>,
        /// Cost usd.
        cost_usd: Option<f64>,
        /// Expires at.
        expires_at: Option<Timestamp>,
    }
}

/// Every eval execution beside the human rating of its trace (a view of eval_executions left join feedback). Scope: its eval.
///
/// Read-only: a row per eval execution, with the rating of its trace if there is one.
pub mod eval_comparison {
    use super::*;

    /// A row of the `eval_comparison` view.
    #[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable, Serialize)]
    #[diesel(table_name = crate::schema::eval_comparison, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
    pub struct Row {
        /// The id of the eval execution (the view's key).
        pub id: String,
        /// The eval execution.
        pub execution_id: String,
        /// The eval that made the prediction.
        pub eval_id: String,
        /// The trace it judged.
        pub trace_id: String,
        /// Pass / fail.
        pub predicted_result: Option<bool>,
        /// Predicted reason.
        pub predicted_reason: Option<String>,
        /// Execution time ms.
        pub execution_time_ms: Option<i64>,
        /// The execution's error.
        pub execution_error: Option<String>,
        /// Executed at.
        pub executed_at: Timestamp,
        /// The human rating, if any.
        pub feedback_id: Option<String>,
        /// `positive` | `negative` | `neutral`.
        pub human_rating: Option<crate::models::FeedbackRating>,
        /// The annotator's notes.
        pub rating_detail: Option<String>,
        /// Null without a rating or prediction; true when a positive rating met a fail or a negative rating a pass.
        pub is_contradiction: Option<bool>,
    }
}
