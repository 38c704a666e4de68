//! The Diesel schema: one `table!` per table of the data model and the `eval_comparison` view.
//!
//! Written by hand for both backends (`print-schema` output differs per backend): enums are
//! `Text`, timestamps and JSON use the crate's own SQL types ([`UtcTimestamp`], [`JsonValue`]),
//! which read and write the fixed-width UTC text and JSON text on SQLite and `timestamptz` /
//! `jsonb` on PostgreSQL. The `tables!` wrapper also records every declared column in
//! [`DECLARED`], so a test can compare this module with what each database reports.
//!
//! [`UtcTimestamp`]: crate::db::sql_types::UtcTimestamp
//! [`JsonValue`]: crate::db::sql_types::JsonValue

/// Declares the tables through `diesel::table!` and lists them, with their columns and SQL
/// types as written, in [`DECLARED`].
macro_rules! tables {
    ($( $(#[$meta:meta])* $name:ident ($pk:ident) { $( $col:ident -> $ty:ty, )* } )*) => {
        $(
            diesel::table! {
                use diesel::sql_types::*;
                use crate::db::sql_types::*;

                $(#[$meta])*
                $name ($pk) {
                    $( $col -> $ty, )*
                }
            }
        )*

        /// Every table and view declared here: its name and its columns with their SQL types.
        pub const DECLARED: &[(&str, &[(&str, &str)])] = &[
            $( (stringify!($name), &[ $( (stringify!($col), stringify!($ty)), )* ]), )*
        ];

        diesel::allow_tables_to_appear_in_same_query!($($name),*);
    };
}

tables! {
    /// A person who uses iofold. Visible to themself and to the users who share a workspace with them.
    users (id) {
        id -> Text,
        email -> Text,
        name -> Nullable<Text>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// The tenant: every other row belongs to exactly one workspace. Who may act in it is decided by its members.
    workspaces (id) {
        id -> Text,
        user_id -> Nullable<Text>,
        name -> Text,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// Who may act in a workspace, and with which role.
    workspace_members (id) {
        id -> Text,
        workspace_id -> Text,
        user_id -> Text,
        role -> Text,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// An API token of a user (scope: that user). Only the SHA-256 hash of the secret is stored; the secret is shown once.
    api_tokens (id) {
        id -> Text,
        user_id -> Text,
        name -> Text,
        token_hash -> Text,
        last_used_at -> Nullable<UtcTimestamp>,
        expires_at -> Nullable<UtcTimestamp>,
        revoked_at -> Nullable<UtcTimestamp>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A connection to a trace platform (Langfuse, LangSmith, OpenAI, …). Scope: its workspace.
    integrations (id) {
        id -> Text,
        workspace_id -> Text,
        name -> Text,
        platform -> Text,
        api_key_encrypted -> Text,
        base_url -> Nullable<Text>,
        config -> Nullable<JsonValue>,
        status -> Text,
        error_message -> Nullable<Text>,
        last_synced_at -> Nullable<UtcTimestamp>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// An agent discovered in traces or defined by hand. Scope: its workspace.
    agents (id) {
        id -> Text,
        workspace_id -> Text,
        name -> Text,
        description -> Nullable<Text>,
        status -> Text,
        active_version_id -> Nullable<Text>,
        active_eval_id -> Nullable<Text>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A version of an agent's prompt template. Scope: its agent.
    agent_versions (id) {
        id -> Text,
        agent_id -> Text,
        version -> BigInt,
        prompt_template -> Text,
        variables -> Nullable<JsonValue>,
        source -> Text,
        parent_version_id -> Nullable<Text>,
        accuracy -> Nullable<Double>,
        status -> Text,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A distinct system prompt seen in traces, by hash. Scope: its workspace.
    system_prompts (id) {
        id -> Text,
        workspace_id -> Text,
        agent_name -> Text,
        prompt_hash -> Text,
        content -> Text,
        metadata -> Nullable<JsonValue>,
        first_seen_at -> UtcTimestamp,
        last_seen_at -> UtcTimestamp,
        trace_count -> BigInt,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// An imported, normalised agent run. Scope: its workspace.
    traces (id) {
        id -> Text,
        workspace_id -> Text,
        integration_id -> Nullable<Text>,
        trace_id -> Text,
        source -> Text,
        timestamp -> UtcTimestamp,
        metadata -> Nullable<JsonValue>,
        steps -> JsonValue,
        spans -> Nullable<JsonValue>,
        total_tokens -> Nullable<BigInt>,
        total_duration_ms -> Nullable<BigInt>,
        span_count -> Nullable<BigInt>,
        raw_data -> Nullable<JsonValue>,
        input_preview -> Nullable<Text>,
        output_preview -> Nullable<Text>,
        step_count -> BigInt,
        has_errors -> Bool,
        agent_version_id -> Nullable<Text>,
        assignment_status -> Text,
        system_prompt_id -> Nullable<Text>,
        imported_at -> UtcTimestamp,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A summary of a trace, one per trace. Scope: its trace.
    trace_summaries (id) {
        id -> Text,
        trace_id -> Text,
        summary -> Text,
        key_behaviors -> Nullable<JsonValue>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// The human rating of a trace, one per trace. Scope: its trace's workspace, which the row carries.
    feedback (id) {
        id -> Text,
        trace_id -> Text,
        agent_id -> Nullable<Text>,
        rating -> Text,
        rating_detail -> Nullable<Text>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
        workspace_id -> Text,
    }
    /// The task a trace performed, extracted for evaluation, one per trace. Scope: its trace.
    task_metadata (id) {
        id -> Text,
        trace_id -> Text,
        user_message -> Text,
        expected_output -> Nullable<Text>,
        expected_action -> Nullable<Text>,
        success_criteria -> Nullable<JsonValue>,
        task_type -> Nullable<Text>,
        difficulty -> Nullable<Text>,
        domain -> Nullable<Text>,
        custom_metadata -> Nullable<JsonValue>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A trace similar to a task (append-only). Scope: its task metadata.
    task_similar_traces (id) {
        id -> Text,
        task_metadata_id -> Text,
        similar_trace_id -> Text,
        similarity_score -> Double,
        human_score -> Nullable<Double>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// Human feedback on a trace paired with a task (append-only). Scope: its task metadata.
    task_feedback_pairs (id) {
        id -> Text,
        task_metadata_id -> Text,
        feedback_trace_id -> Text,
        human_feedback -> Text,
        human_score -> Nullable<Double>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A generated function (template extractor, injector or eval). Scope: its workspace.
    functions (id) {
        id -> Text,
        workspace_id -> Text,
        r#type -> Text,
        name -> Text,
        code -> Text,
        input_schema -> Nullable<JsonValue>,
        output_schema -> Nullable<JsonValue>,
        model_used -> Nullable<Text>,
        parent_function_id -> Nullable<Text>,
        status -> Text,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// Links an agent to its extractor and injector functions (one per role). Scope: its agent.
    agent_functions (id) {
        id -> Text,
        agent_id -> Text,
        function_id -> Text,
        role -> Text,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A tool in the global registry: readable by everyone, written by server admins.
    tools (id) {
        id -> Text,
        name -> Text,
        description -> Text,
        parameters_schema -> JsonValue,
        handler_key -> Text,
        category -> Text,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// Links an agent to a tool it may call. Scope: its agent.
    agent_tools (id) {
        id -> Text,
        agent_id -> Text,
        tool_id -> Text,
        config -> Nullable<JsonValue>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A generated Python eval function, versioned per agent. Scope: its agent.
    evals (id) {
        id -> Text,
        agent_id -> Text,
        version -> BigInt,
        parent_eval_id -> Nullable<Text>,
        name -> Text,
        description -> Nullable<Text>,
        code -> Text,
        model_used -> Nullable<Text>,
        accuracy -> Nullable<Double>,
        training_trace_ids -> Nullable<JsonValue>,
        generation_prompt -> Nullable<Text>,
        test_results -> Nullable<JsonValue>,
        execution_count -> BigInt,
        contradiction_count -> BigInt,
        status -> Text,
        auto_execute_enabled -> Bool,
        auto_refine_enabled -> Bool,
        monitoring_thresholds -> Nullable<JsonValue>,
        cohen_kappa -> Nullable<Double>,
        f1_score -> Nullable<Double>,
        precision -> Nullable<Double>,
        recall -> Nullable<Double>,
        variation -> Nullable<Text>,
        agreement_rate -> Nullable<Double>,
        confusion_matrix -> Nullable<JsonValue>,
        per_trace_results -> Nullable<JsonValue>,
        total_cost_usd -> Nullable<Double>,
        avg_duration_ms -> Nullable<Double>,
        activated_at -> Nullable<UtcTimestamp>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A prediction of an eval on a trace (append-only). Scope: its eval.
    eval_executions (id) {
        id -> Text,
        eval_id -> Text,
        trace_id -> Text,
        predicted_result -> Nullable<Bool>,
        predicted_reason -> Nullable<Text>,
        execution_time_ms -> Nullable<BigInt>,
        error -> Nullable<Text>,
        stdout -> Nullable<Text>,
        stderr -> Nullable<Text>,
        score -> Nullable<Double>,
        feedback -> Nullable<Text>,
        success -> Nullable<Bool>,
        llm_calls -> Nullable<BigInt>,
        cache_hits -> Nullable<BigInt>,
        llm_cost_usd -> Nullable<Double>,
        executed_at -> UtcTimestamp,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A cross-validation result of an eval (append-only). Scope: its eval.
    eval_cv_results (id) {
        id -> Text,
        eval_id -> Text,
        k_folds -> BigInt,
        mean_accuracy -> Nullable<Double>,
        mean_f1 -> Nullable<Double>,
        mean_agreement_rate -> Nullable<Double>,
        mean_kappa -> Nullable<Double>,
        std_accuracy -> Nullable<Double>,
        std_kappa -> Nullable<Double>,
        is_stable -> Nullable<Bool>,
        fold_results -> Nullable<JsonValue>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A cached LLM response used by evals. Global, server admins only.
    eval_llm_cache (id) {
        id -> Text,
        prompt_hash -> Text,
        model -> Text,
        response_text -> Text,
        tokens_input -> Nullable<BigInt>,
        tokens_output -> Nullable<BigInt>,
        cost_usd -> Nullable<Double>,
        expires_at -> Nullable<UtcTimestamp>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// Background work with progress. Scope: its workspace.
    jobs (id) {
        id -> Text,
        workspace_id -> Text,
        r#type -> Text,
        status -> Text,
        progress -> BigInt,
        metadata -> Nullable<JsonValue>,
        result -> Nullable<JsonValue>,
        error -> Nullable<Text>,
        error_category -> Nullable<Text>,
        retry_count -> BigInt,
        max_retries -> BigInt,
        last_error_at -> Nullable<UtcTimestamp>,
        next_retry_at -> Nullable<UtcTimestamp>,
        priority -> BigInt,
        agent_id -> Nullable<Text>,
        agent_version_id -> Nullable<Text>,
        trigger_event -> Nullable<Text>,
        trigger_threshold -> Nullable<Text>,
        started_at -> Nullable<UtcTimestamp>,
        completed_at -> Nullable<UtcTimestamp>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A retry of a job (append-only). Scope: its job.
    job_retry_history (id) {
        id -> Text,
        job_id -> Text,
        attempt -> BigInt,
        error -> Text,
        error_category -> Text,
        delay_ms -> BigInt,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A day's health figures of an eval. Scope: its eval.
    performance_snapshots (id) {
        id -> Text,
        eval_id -> Text,
        snapshot_date -> Text,
        accuracy -> Nullable<Double>,
        execution_count -> BigInt,
        contradiction_count -> BigInt,
        error_count -> BigInt,
        pass_count -> BigInt,
        fail_count -> BigInt,
        prompt_distribution -> Nullable<JsonValue>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// An alert raised on an eval's performance. Scope: its eval.
    performance_alerts (id) {
        id -> Text,
        eval_id -> Text,
        alert_type -> Text,
        severity -> Text,
        current_value -> Nullable<Double>,
        threshold_value -> Nullable<Double>,
        message -> Text,
        prompt_id -> Nullable<Text>,
        triggered_at -> UtcTimestamp,
        acknowledged_at -> Nullable<UtcTimestamp>,
        resolved_at -> Nullable<UtcTimestamp>,
        acknowledged_by -> Nullable<Text>,
        resolved_by -> Nullable<Text>,
        auto_action_taken -> Nullable<Text>,
        auto_action_job_id -> Nullable<Text>,
        metadata -> Nullable<JsonValue>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A refinement of an eval into a new version. Scope: its eval.
    refinement_history (id) {
        id -> Text,
        eval_id -> Text,
        parent_version -> Nullable<BigInt>,
        new_version -> BigInt,
        trigger_type -> Text,
        trigger_alert_id -> Nullable<Text>,
        trigger_metrics -> Nullable<JsonValue>,
        include_contradictions -> Bool,
        custom_instructions -> Nullable<Text>,
        result_accuracy -> Nullable<Double>,
        improvement_delta -> Nullable<Double>,
        status -> Text,
        job_id -> Nullable<Text>,
        rejected_at -> Nullable<UtcTimestamp>,
        deployed_at -> Nullable<UtcTimestamp>,
        rejected_by -> Nullable<Text>,
        deployed_by -> Nullable<Text>,
        rejection_reason -> Nullable<Text>,
        completed_at -> Nullable<UtcTimestamp>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// The auto-refinement cooldown of an eval, one per eval. Scope: its eval.
    auto_refine_cooldowns (id) {
        id -> Text,
        eval_id -> Text,
        last_attempt_at -> UtcTimestamp,
        next_allowed_at -> UtcTimestamp,
        consecutive_failures -> BigInt,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A set of tasks to run an agent on. Scope: its workspace.
    tasksets (id) {
        id -> Text,
        workspace_id -> Text,
        agent_id -> Text,
        name -> Text,
        description -> Nullable<Text>,
        status -> Text,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A task of a taskset, deduplicated on its content hash. Scope: its taskset.
    taskset_tasks (id) {
        id -> Text,
        taskset_id -> Text,
        user_message -> Text,
        expected_output -> Nullable<Text>,
        source -> Text,
        source_trace_id -> Nullable<Text>,
        content_hash -> Text,
        metadata -> Nullable<JsonValue>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A run of an agent over a taskset. Scope: its workspace.
    taskset_runs (id) {
        id -> Text,
        workspace_id -> Text,
        agent_id -> Text,
        taskset_id -> Text,
        status -> Text,
        task_count -> BigInt,
        model_provider -> Nullable<Text>,
        model_id -> Nullable<Text>,
        config -> JsonValue,
        error -> Nullable<Text>,
        started_at -> Nullable<UtcTimestamp>,
        completed_at -> Nullable<UtcTimestamp>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// The result of one task in a taskset run. Scope: its run.
    taskset_run_results (id) {
        id -> Text,
        run_id -> Text,
        task_id -> Text,
        status -> Text,
        response -> Nullable<Text>,
        expected_output -> Nullable<Text>,
        score_reason -> Nullable<Text>,
        error -> Nullable<Text>,
        score -> Nullable<Double>,
        trace_id -> Nullable<Text>,
        execution_time_ms -> Nullable<BigInt>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A GEPA prompt-optimisation run. Scope: its workspace.
    gepa_runs (id) {
        id -> Text,
        workspace_id -> Text,
        agent_id -> Text,
        eval_id -> Nullable<Text>,
        seed_prompt -> Text,
        test_case_count -> BigInt,
        max_metric_calls -> BigInt,
        parallelism -> BigInt,
        status -> Text,
        progress_metric_calls -> BigInt,
        best_prompt -> Nullable<Text>,
        best_score -> Nullable<Double>,
        total_candidates -> BigInt,
        state_path -> Nullable<Text>,
        error -> Nullable<Text>,
        optimized_version_id -> Nullable<Text>,
        taskset_id -> Nullable<Text>,
        train_split -> Double,
        val_split -> Double,
        random_seed -> Nullable<BigInt>,
        started_at -> Nullable<UtcTimestamp>,
        completed_at -> Nullable<UtcTimestamp>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A task of a GEPA run with its split. Scope: its run.
    gepa_run_tasks (id) {
        id -> Text,
        run_id -> Text,
        task_id -> Text,
        split -> Text,
        score -> Nullable<Double>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A batch of rollouts of an agent with a system prompt. Scope: its workspace.
    rollout_batches (id) {
        id -> Text,
        workspace_id -> Text,
        agent_id -> Text,
        system_prompt -> Text,
        task_count -> BigInt,
        status -> Text,
        config -> JsonValue,
        completed_at -> Nullable<UtcTimestamp>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// The result of one rollout (append-only). Scope: its batch.
    rollout_results (id) {
        id -> Text,
        batch_id -> Text,
        task_id -> Text,
        status -> Text,
        trace -> Nullable<JsonValue>,
        error -> Nullable<Text>,
        execution_time_ms -> Nullable<BigInt>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// An interactive playground session with an agent version. Scope: its workspace.
    playground_sessions (id) {
        id -> Text,
        workspace_id -> Text,
        agent_id -> Text,
        agent_version_id -> Text,
        messages -> JsonValue,
        variables -> JsonValue,
        files -> JsonValue,
        model_provider -> Text,
        model_id -> Text,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A step of a playground session (append-only). Scope: its session.
    playground_steps (id) {
        id -> Text,
        session_id -> Text,
        trace_id -> Text,
        step_index -> BigInt,
        step_type -> Text,
        input -> Nullable<JsonValue>,
        output -> Nullable<JsonValue>,
        tool_args -> Nullable<JsonValue>,
        tool_result -> Nullable<JsonValue>,
        tool_name -> Nullable<Text>,
        tool_error -> Nullable<Text>,
        latency_ms -> Nullable<BigInt>,
        tokens_input -> Nullable<BigInt>,
        tokens_output -> Nullable<BigInt>,
        timestamp -> UtcTimestamp,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// A workflow: a graph of nodes and edges. Scope: its workspace.
    workflows (id) {
        id -> Text,
        workspace_id -> Text,
        name -> Text,
        description -> Nullable<Text>,
        nodes -> JsonValue,
        edges -> JsonValue,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// One run of a workflow. Scope: its workflow.
    executions (id) {
        id -> Text,
        workflow_id -> Text,
        user_id -> Nullable<Text>,
        status -> Text,
        data -> Nullable<JsonValue>,
        result -> Nullable<JsonValue>,
        error -> Nullable<Text>,
        started_at -> Nullable<UtcTimestamp>,
        completed_at -> Nullable<UtcTimestamp>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// One node's run inside a workflow execution. Scope: its execution.
    execution_steps (id) {
        id -> Text,
        execution_id -> Text,
        node_id -> Text,
        status -> Text,
        input -> Nullable<JsonValue>,
        output -> Nullable<JsonValue>,
        validation -> Nullable<JsonValue>,
        retry_count -> BigInt,
        max_retries -> BigInt,
        error -> Nullable<Text>,
        started_at -> Nullable<UtcTimestamp>,
        completed_at -> Nullable<UtcTimestamp>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
    /// Every eval execution beside the human rating of its trace (a view of eval_executions left join feedback). Scope: its eval.
    eval_comparison (id) {
        id -> Text,
        execution_id -> Text,
        eval_id -> Text,
        trace_id -> Text,
        predicted_result -> Nullable<Bool>,
        predicted_reason -> Nullable<Text>,
        execution_time_ms -> Nullable<BigInt>,
        execution_error -> Nullable<Text>,
        executed_at -> UtcTimestamp,
        feedback_id -> Nullable<Text>,
        human_rating -> Nullable<Text>,
        rating_detail -> Nullable<Text>,
        is_contradiction -> Nullable<Bool>,
    }
}
