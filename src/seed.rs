//! Demo data (`iofold-graph seed`, or `serve --seed`): one user, workspace and agent with
//! realistic traces, ratings, an active eval that agrees with every rating, a completed
//! import job, a taskset and a workflow run.
//!
//! Idempotent: the demo rows have fixed ids and timestamps and are inserted with
//! `ON CONFLICT DO NOTHING` in one transaction, so a second run changes nothing. The first
//! run also creates an API token for the demo user and returns its secret (shown once).
//! Refused in production.

use std::collections::HashSet;

use anyhow::bail;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::config::Config;
use crate::crypto::{new_token, token_hash};
use crate::db::sql_types::{Json, Timestamp};
use crate::db::Db;
use crate::domain::{summarize_steps, task_content_hash};
use crate::models::*;
use crate::schema;
use crate::with_tx;

/// The demo user's email.
pub const DEMO_EMAIL: &str = "demo@iofold.dev";

/// What a seed run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedOutcome {
    /// The demo token's secret, when this run created it (the first run).
    pub new_token: Option<String>,
}

/// A fixed demo id: the table's prefix and a constant UUID v7.
fn demo_id(prefix: &str, n: u64) -> String {
    format!("{prefix}_0194a1b2-0000-7000-8000-{n:012}")
}

/// A fixed demo time: minutes after 2026-01-15 09:00 UTC.
fn at(minutes: i64) -> Timestamp {
    let base = Timestamp::parse("2026-01-15T09:00:00Z").expect("valid base time");
    Timestamp::from_datetime(base.as_datetime() + chrono::Duration::minutes(minutes))
}

/// The demo rows' ids, for tests and docs.
pub mod ids {
    use super::demo_id;

    /// The demo user.
    pub fn user() -> String {
        demo_id("user", 1)
    }
    /// The demo workspace.
    pub fn workspace() -> String {
        demo_id("workspace", 1)
    }
    /// The demo agent.
    pub fn agent() -> String {
        demo_id("agent", 1)
    }
    /// The demo eval.
    pub fn eval() -> String {
        demo_id("eval", 1)
    }
    /// The demo token's row.
    pub fn api_token() -> String {
        demo_id("api_token", 1)
    }
}

/// A demo agent run: the user's message, the tool the agent called, its result (JSON) or
/// error, the final answer, and the human rating.
struct DemoRun {
    question: &'static str,
    tool: &'static str,
    result: &'static str,
    error: Option<&'static str>,
    answer: &'static str,
    rating: FeedbackRating,
}

const RUNS: [DemoRun; 5] = [
    DemoRun {
        question: "How do I reset my password?",
        tool: "search_help_center",
        result: r#"{"article": "reset-password", "steps": 3}"#,
        error: None,
        answer: "Go to Settings → Security → Reset password; a link arrives by email within a minute.",
        rating: FeedbackRating::Positive,
    },
    DemoRun {
        question: "I'd like a refund for order #1234, it arrived broken.",
        tool: "lookup_order",
        result: r#"{"order": "1234", "status": "delivered", "total": 59.9}"#,
        error: None,
        answer: "I'm sorry it arrived broken. I've issued a full refund of $59.90 to your card; expect it in 3–5 days.",
        rating: FeedbackRating::Positive,
    },
    DemoRun {
        question: "Cancel my subscription please.",
        tool: "lookup_subscription",
        result: r#"{"plan": "pro", "renews": "2026-02-01"}"#,
        error: None,
        answer: "Our Pro plan has many great features! Would you like to hear about them?",
        rating: FeedbackRating::Negative,
    },
    DemoRun {
        question: "Please change the shipping address of order #5678 to 12 Rue de Rivoli, Paris.",
        tool: "update_order",
        result: r#"{"order": "5678", "updated": true}"#,
        error: None,
        answer: "Done: order #5678 will now ship to 12 Rue de Rivoli, 75001 Paris.",
        rating: FeedbackRating::Positive,
    },
    DemoRun {
        question: "Where is my package? Tracking says nothing since Monday.",
        tool: "track_shipment",
        result: "null",
        error: Some("carrier API timeout after 30s"),
        answer: "Your package is on its way.",
        rating: FeedbackRating::Negative,
    },
];

/// Loads the demo data. Refused in production.
pub async fn run(db: &Db, config: &Config) -> anyhow::Result<SeedOutcome> {
    if config.production {
        bail!("seed is refused in production (APP_ENV or NODE_ENV is `production`): it would mix demo rows into real data");
    }
    let user_id = ids::user();
    let workspace_id = ids::workspace();
    let agent_id = ids::agent();
    let eval_id = ids::eval();
    let integration_id = demo_id("integration", 1);
    let (version1, version2) = (demo_id("agent_version", 1), demo_id("agent_version", 2));

    let users = [user::NewRow {
        id: user_id.clone(),
        email: DEMO_EMAIL.into(),
        name: Some("Demo User".into()),
        created_at: at(0),
        updated_at: at(0),
    }];
    let workspaces = [workspace::NewRow {
        id: workspace_id.clone(),
        user_id: Some(user_id.clone()),
        name: "Demo Workspace".into(),
        created_at: at(0),
        updated_at: at(0),
    }];
    let members = [workspace_member::NewRow {
        id: demo_id("workspace_member", 1),
        workspace_id: workspace_id.clone(),
        user_id: user_id.clone(),
        role: WorkspaceMemberRole::Owner,
        created_at: at(0),
        updated_at: at(0),
    }];
    let integrations = [integration::NewRow {
        id: integration_id.clone(),
        workspace_id: workspace_id.clone(),
        name: "Langfuse (demo)".into(),
        platform: IntegrationPlatform::Langfuse,
        api_key_encrypted: config.secrets.seal("sk-lf-demo-0000000000000000"),
        base_url: Some("https://cloud.langfuse.com".into()),
        config: Some(Json(json!({"project": "support-bot", "sync_interval_minutes": 15}))),
        status: IntegrationStatus::Active,
        error_message: None,
        last_synced_at: Some(at(60)),
        created_at: at(1),
        updated_at: at(1),
    }];
    let agents = [agent::NewRow {
        id: agent_id.clone(),
        workspace_id: workspace_id.clone(),
        name: "Support bot".into(),
        description: Some("Answers customer-support questions for an online shop.".into()),
        status: AgentStatus::Confirmed,
        active_version_id: Some(version2.clone()),
        active_eval_id: Some(eval_id.clone()),
        created_at: at(2),
        updated_at: at(2),
    }];
    let versions = [
        agent_version::NewRow {
            id: version1.clone(),
            agent_id: agent_id.clone(),
            version: 1,
            prompt_template: "You are a helpful support agent for {{shop}}.".into(),
            variables: Some(Json(json!({"shop": "Acme Store"}))),
            source: AgentVersionSource::Discovered,
            parent_version_id: None,
            accuracy: Some(0.6),
            status: AgentVersionStatus::Archived,
            created_at: at(2),
            updated_at: at(2),
        },
        agent_version::NewRow {
            id: version2.clone(),
            agent_id: agent_id.clone(),
            version: 2,
            prompt_template: "You are a helpful support agent for {{shop}}. Do what the customer asks; never upsell when they want to cancel.".into(),
            variables: Some(Json(json!({"shop": "Acme Store"}))),
            source: AgentVersionSource::AiImproved,
            parent_version_id: Some(version1.clone()),
            accuracy: Some(0.8),
            status: AgentVersionStatus::Active,
            created_at: at(3),
            updated_at: at(3),
        },
    ];

    let mut traces = Vec::new();
    let mut feedback_rows = Vec::new();
    let mut executions = Vec::new();
    for (i, DemoRun { question, tool, result, error, answer, rating }) in RUNS.iter().enumerate() {
        let n = i as u64 + 1;
        let minute = 10 + 10 * i as i64;
        let trace_id = demo_id("trace", n);
        let tool_output: serde_json::Value = serde_json::from_str(result).expect("demo tool output is JSON");
        let steps = json!([
            {"type": "llm_call", "input": question, "output": format!("Calling {tool}"), "error": null},
            {"type": "tool_call", "name": tool, "input": {"query": question}, "output": tool_output, "error": error},
            {"type": "llm_call", "input": "Compose the answer", "output": answer, "error": null},
        ]);
        let summary = summarize_steps(&steps);
        traces.push(trace::NewRow {
            id: trace_id.clone(),
            workspace_id: workspace_id.clone(),
            integration_id: Some(integration_id.clone()),
            trace_id: format!("lf-trace-{n:04}"),
            source: TraceSource::Langfuse,
            timestamp: at(minute),
            metadata: Some(Json(json!({"channel": "chat", "locale": "en"}))),
            steps: Json(steps),
            spans: None,
            total_tokens: Some(420 + 37 * n as i64),
            total_duration_ms: Some(1800 + 250 * n as i64),
            span_count: Some(3),
            raw_data: None,
            input_preview: summary.input_preview,
            output_preview: summary.output_preview,
            step_count: summary.step_count,
            has_errors: summary.has_errors,
            agent_version_id: Some(version2.clone()),
            assignment_status: TraceAssignmentStatus::Assigned,
            system_prompt_id: None,
            imported_at: at(60),
            created_at: at(60),
            updated_at: at(60),
        });
        feedback_rows.push(feedback::NewRow {
            id: demo_id("feedback", n),
            trace_id: trace_id.clone(),
            agent_id: Some(agent_id.clone()),
            rating: *rating,
            rating_detail: Some(match rating {
                FeedbackRating::Positive => "Correct and polite.".to_owned(),
                _ => "Did not do what the customer asked.".to_owned(),
            }),
            created_at: at(70 + i as i64),
            updated_at: at(70 + i as i64),
            workspace_id: workspace_id.clone(),
        });
        let pass = *rating == FeedbackRating::Positive;
        executions.push(eval_execution::NewRow {
            id: demo_id("eval_execution", n),
            eval_id: eval_id.clone(),
            trace_id,
            predicted_result: Some(pass),
            predicted_reason: Some(
                if pass { "The answer resolves the request." } else { "The answer ignores the request." }.into(),
            ),
            execution_time_ms: Some(40 + n as i64),
            error: None,
            stdout: None,
            stderr: None,
            score: Some(if pass { 0.9 } else { 0.1 }),
            feedback: None,
            success: Some(true),
            llm_calls: Some(0),
            cache_hits: Some(0),
            llm_cost_usd: Some(0.0),
            executed_at: at(90 + i as i64),
            created_at: at(90 + i as i64),
            updated_at: at(90 + i as i64),
        });
    }
    let evals = [eval::NewRow {
        id: eval_id.clone(),
        agent_id: agent_id.clone(),
        version: 1,
        parent_eval_id: None,
        name: "resolves_request".into(),
        description: Some("Passes when the final answer does what the customer asked.".into()),
        code: "def eval_resolves_request(trace):\n    answer = trace['steps'][-1]['output'].lower()\n    \
               return not any(w in answer for w in ('great features', 'on its way')), 'checked the answer'\n"
            .into(),
        model_used: Some("claude-sonnet-4".into()),
        accuracy: Some(1.0),
        training_trace_ids: Some(Json(json!(traces.iter().map(|t| t.id.clone()).collect::<Vec<_>>()))),
        generation_prompt: None,
        test_results: Some(Json(json!({"passed": 5, "failed": 0}))),
        execution_count: 5,
        contradiction_count: 0,
        status: EvalStatus::Active,
        auto_execute_enabled: true,
        auto_refine_enabled: false,
        monitoring_thresholds: Some(Json(json!({"min_accuracy": 0.8}))),
        cohen_kappa: Some(1.0),
        f1_score: Some(1.0),
        precision: Some(1.0),
        recall: Some(1.0),
        variation: Some("correctness".into()),
        agreement_rate: Some(1.0),
        confusion_matrix: Some(Json(json!({"tp": 3, "tn": 2, "fp": 0, "fn": 0}))),
        per_trace_results: None,
        total_cost_usd: Some(0.0),
        avg_duration_ms: Some(43.0),
        activated_at: Some(at(85)),
        created_at: at(80),
        updated_at: at(85),
    }];
    let jobs = [job::NewRow {
        id: demo_id("job", 1),
        workspace_id: workspace_id.clone(),
        r#type: JobType::Import,
        status: JobStatus::Completed,
        progress: 100,
        metadata: Some(Json(json!({"integration_id": integration_id, "limit": 5}))),
        result: Some(Json(json!({"imported": 5, "updated": 0}))),
        error: None,
        error_category: None,
        retry_count: 0,
        max_retries: 5,
        last_error_at: None,
        next_retry_at: None,
        priority: 0,
        agent_id: None,
        agent_version_id: None,
        trigger_event: Some("manual".into()),
        trigger_threshold: None,
        started_at: Some(at(58)),
        completed_at: Some(at(60)),
        created_at: at(57),
        updated_at: at(60),
    }];
    let taskset_id = demo_id("taskset", 1);
    let tasksets = [taskset::NewRow {
        id: taskset_id.clone(),
        workspace_id: workspace_id.clone(),
        agent_id: agent_id.clone(),
        name: "Support regressions".into(),
        description: Some("Requests the bot must keep handling well.".into()),
        status: TasksetStatus::Active,
        created_at: at(100),
        updated_at: at(100),
    }];
    let tasks = RUNS
        .iter()
        .enumerate()
        .filter(|(_, run)| run.rating == FeedbackRating::Positive)
        .map(|(i, DemoRun { question, answer, .. })| taskset_task::NewRow {
            id: demo_id("taskset_task", i as u64 + 1),
            taskset_id: taskset_id.clone(),
            user_message: (*question).into(),
            expected_output: Some((*answer).into()),
            source: TasksetTaskSource::Trace,
            source_trace_id: Some(demo_id("trace", i as u64 + 1)),
            content_hash: task_content_hash(question, Some(answer)),
            metadata: None,
            created_at: at(101),
            updated_at: at(101),
        })
        .collect::<Vec<_>>();
    let workflow_id = demo_id("workflow", 1);
    let node_ids = ["import", "evaluate", "report"];
    let workflows = [workflow::NewRow {
        id: workflow_id.clone(),
        workspace_id: workspace_id.clone(),
        name: "Nightly evaluation".into(),
        description: Some("Import new traces, run the active eval, report contradictions.".into()),
        nodes: Json(json!([
            {"id": "import", "type": "import_traces", "data": {"integration_id": integration_id}},
            {"id": "evaluate", "type": "run_eval", "data": {"eval_id": eval_id}},
            {"id": "report", "type": "notify", "data": {"channel": "email"}},
        ])),
        edges: Json(json!([
            {"id": "import-evaluate", "source": "import", "target": "evaluate"},
            {"id": "evaluate-report", "source": "evaluate", "target": "report"},
        ])),
        created_at: at(110),
        updated_at: at(110),
    }];
    let execution_id = demo_id("execution", 1);
    let workflow_executions = [execution::NewRow {
        id: execution_id.clone(),
        workflow_id,
        user_id: Some(user_id.clone()),
        status: ExecutionStatus::Completed,
        data: Some(Json(json!({"since": "2026-01-14"}))),
        result: Some(Json(json!({"contradictions": 0}))),
        error: None,
        started_at: Some(at(120)),
        completed_at: Some(at(123)),
        created_at: at(120),
        updated_at: at(123),
    }];
    let steps = node_ids
        .iter()
        .enumerate()
        .map(|(i, node)| execution_step::NewRow {
            id: demo_id("execution_step", i as u64 + 1),
            execution_id: execution_id.clone(),
            node_id: (*node).into(),
            status: ExecutionStepStatus::Completed,
            input: Some(Json(json!({}))),
            output: Some(Json(json!({"ok": true}))),
            validation: None,
            retry_count: 0,
            max_retries: 3,
            error: None,
            started_at: Some(at(120 + i as i64)),
            completed_at: Some(at(121 + i as i64)),
            created_at: at(120 + i as i64),
            updated_at: at(121 + i as i64),
        })
        .collect::<Vec<_>>();

    let token_row_id = ids::api_token();
    let token = new_token();
    let token_row = api_token::NewRow {
        id: token_row_id.clone(),
        user_id: user_id.clone(),
        name: "demo".into(),
        token_hash: token_hash(&token),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
        created_at: Timestamp::now(),
        updated_at: Timestamp::now(),
    };

    /// Inserts rows one statement per row (SQLite has no multi-row `INSERT … ON CONFLICT`
    /// in Diesel), skipping those that exist; returns how many were new.
    macro_rules! insert_all {
        ($conn:ident, $table:path, $rows:expr) => {{
            let mut inserted = 0;
            for row in $rows.iter() {
                inserted += diesel::insert_into($table).values(row).on_conflict_do_nothing().execute($conn).await?;
            }
            inserted
        }};
    }
    /// The ids among `$ids` that `$table` holds (a demo row skipped because another row
    /// holds one of its unique keys is not there).
    macro_rules! present {
        ($conn:ident, $table:ident, $ids:expr) => {{
            let ids: Vec<String> = $ids;
            schema::$table::table
                .filter(schema::$table::id.eq_any(ids))
                .select(schema::$table::id)
                .load::<String>($conn)
                .await?
                .into_iter()
                .collect::<HashSet<String>>()
        }};
    }

    // Seeding works whatever rows exist: the demo user may already exist under another id
    // (`token create --email demo@iofold.dev` before `seed`), and a demo row may be skipped
    // because another row holds one of its unique keys. Every reference therefore names the
    // rows as they are in the database: the demo user is found by email; a row whose
    // required parent is missing is skipped; an optional reference to a missing row is left
    // empty.
    let token_created: usize = with_tx!(db, async |conn| {
        insert_all!(conn, schema::users::table, users);
        let by_email: Option<String> = schema::users::table
            .filter(schema::users::email.eq(DEMO_EMAIL))
            .select(schema::users::id)
            .first::<String>(conn)
            .await
            .optional()?;
        let user_id = by_email.unwrap_or_else(|| user_id.clone());
        let workspaces = workspaces.clone().map(|row| workspace::NewRow { user_id: Some(user_id.clone()), ..row });
        insert_all!(conn, schema::workspaces::table, workspaces);
        let members = members.clone().map(|row| workspace_member::NewRow { user_id: user_id.clone(), ..row });
        insert_all!(conn, schema::workspace_members::table, members);
        insert_all!(conn, schema::integrations::table, integrations);
        let has_integration = !present!(conn, integrations, vec![integration_id.clone()]).is_empty();
        insert_all!(conn, schema::agents::table, agents);
        // The first version, then the second (whose parent it is).
        insert_all!(conn, schema::agent_versions::table, versions[..1]);
        let mut versions_present = present!(conn, agent_versions, vec![version1.clone()]);
        let second = versions[1..].iter().cloned().map(|row| agent_version::NewRow {
            parent_version_id: row.parent_version_id.filter(|p| versions_present.contains(p)),
            ..row
        });
        insert_all!(conn, schema::agent_versions::table, second.collect::<Vec<_>>());
        versions_present = present!(conn, agent_versions, vec![version1.clone(), version2.clone()]);
        let traces: Vec<trace::NewRow> = traces
            .iter()
            .cloned()
            .map(|row| trace::NewRow {
                integration_id: row.integration_id.filter(|_| has_integration),
                agent_version_id: row.agent_version_id.filter(|v| versions_present.contains(v)),
                ..row
            })
            .collect();
        insert_all!(conn, schema::traces::table, traces);
        let traces_present = present!(conn, traces, traces.iter().map(|t| t.id.clone()).collect());
        let feedback_rows: Vec<_> =
            feedback_rows.iter().filter(|f| traces_present.contains(&f.trace_id)).cloned().collect();
        insert_all!(conn, schema::feedback::table, feedback_rows);
        insert_all!(conn, schema::evals::table, evals);
        let evals_present = present!(conn, evals, vec![eval_id.clone()]);
        let executions: Vec<_> = executions
            .iter()
            .filter(|x| traces_present.contains(&x.trace_id) && evals_present.contains(&x.eval_id))
            .cloned()
            .collect();
        insert_all!(conn, schema::eval_executions::table, executions);
        insert_all!(conn, schema::jobs::table, jobs);
        insert_all!(conn, schema::tasksets::table, tasksets);
        let tasks: Vec<_> = tasks
            .iter()
            .cloned()
            .map(|row| taskset_task::NewRow {
                source_trace_id: row.source_trace_id.filter(|t| traces_present.contains(t)),
                ..row
            })
            .collect();
        insert_all!(conn, schema::taskset_tasks::table, tasks);
        insert_all!(conn, schema::workflows::table, workflows);
        let workflow_executions =
            workflow_executions.clone().map(|row| execution::NewRow { user_id: Some(user_id.clone()), ..row });
        insert_all!(conn, schema::executions::table, workflow_executions);
        insert_all!(conn, schema::execution_steps::table, steps);
        let token_row = api_token::NewRow { user_id: user_id.clone(), ..token_row.clone() };
        Ok::<usize, diesel::result::Error>(insert_all!(conn, schema::api_tokens::table, [token_row]))
    })?;
    Ok(SeedOutcome { new_token: (token_created == 1).then_some(token) })
}
