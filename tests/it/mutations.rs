//! Mutations through HTTP, on both backends: the generic create / update / delete of every
//! writable table (driven by the catalog, so a new table cannot be forgotten), input checks
//! before the database, tenancy and roles, transactions, and the domain mutations
//! (ratings and eval counters, bulk imports, activations, jobs, members, tokens, workflow
//! runs).

use iofold_graph::catalog::{self, Column, Kind, Scope, Table};
use iofold_graph::db::sql_types::Timestamp;
use iofold_graph::db::{Backend, Db};
use iofold_graph::graphql::mutations::policy::{self, Shape, Who};
use iofold_graph::graphql::names::{self, table_names};
use serde_json::{json, Value as Json};

use crate::both_backends;
use crate::support::app::TestApp;
use crate::support::fixtures::{self, count, execute, quote, Fixtures, Value};
use crate::support::world::{world, World};

/// The generic mutations `api.md` promises per table: C(reate), U(pdate), D(elete). Every
/// table of the catalog must be listed (a new table needs a decision here).
const PROMISED: &[(&str, &str)] = &[
    ("users", "CUD"),
    ("workspaces", "CUD"),
    ("workspace_members", ""),
    ("api_tokens", ""),
    ("integrations", "CUD"),
    ("agents", "CUD"),
    ("agent_versions", "CUD"),
    ("system_prompts", "CUD"),
    ("traces", "CUD"),
    ("trace_summaries", "CUD"),
    ("feedback", "UD"),
    ("task_metadata", "CUD"),
    ("task_similar_traces", "CD"),
    ("task_feedback_pairs", "CD"),
    ("functions", "CUD"),
    ("agent_functions", "CD"),
    ("tools", "CUD"),
    ("agent_tools", "CUD"),
    ("evals", "CUD"),
    ("eval_executions", "CD"),
    ("eval_cv_results", "CD"),
    ("eval_llm_cache", "CUD"),
    ("jobs", "CUD"),
    ("job_retry_history", ""),
    ("performance_snapshots", "CUD"),
    ("performance_alerts", "CUD"),
    ("refinement_history", "CUD"),
    ("auto_refine_cooldowns", "CUD"),
    ("tasksets", "CUD"),
    ("taskset_tasks", "CUD"),
    ("taskset_runs", "CUD"),
    ("taskset_run_results", "CUD"),
    ("gepa_runs", "CUD"),
    ("gepa_run_tasks", "CUD"),
    ("rollout_batches", "CUD"),
    ("rollout_results", "CD"),
    ("playground_sessions", "CUD"),
    ("playground_steps", "CD"),
    ("workflows", "CUD"),
    ("executions", "UD"),
    ("execution_steps", "U"),
];

impl World {
    fn db(&self) -> &Db {
        &self.app.state.db
    }

    /// Runs an operation as the caller the table's policy needs (the admin secret for
    /// server-only tables, workspace A's owner otherwise).
    async fn as_writer(&self, table: &Table, who: Option<Who>, query: &str, vars: Json) -> Json {
        let response = match who {
            Some(Who::Server) | Some(Who::SelfUser) => self.app.graphql_admin(query, vars).await,
            _ => self.app.graphql(Some(&self.token_a), query, vars).await,
        };
        assert!(response.body.get("errors").is_none(), "{}: {query}: {}", table.name, response.body);
        response.body["data"].clone()
    }

    async fn rows(&self, table: &str) -> i64 {
        count(self.db(), table, None).await
    }
}

fn table(name: &str) -> &'static Table {
    catalog::table(name).unwrap()
}

/// Every field of a table's type.
fn selection(table: &Table) -> String {
    table.columns.iter().filter(|c| !names::is_secret(c)).map(names::column_field).collect::<Vec<_>>().join(" ")
}

fn create_op(table: &Table) -> String {
    let (t, one) = (table.type_name, table_names(table).one);
    format!("mutation($input: Create{t}Input!) {{ create{t}(input: $input) {{ {one} {{ {} }} }} }}", selection(table))
}

fn update_op(table: &Table) -> String {
    let (t, one) = (table.type_name, table_names(table).one);
    format!(
        "mutation($id: ID!, $patch: {t}Patch!) {{ update{t}(id: $id, patch: $patch) {{ {one} {{ {} }} }} }}",
        selection(table)
    )
}

fn delete_op(table: &Table) -> String {
    let t = table.type_name;
    format!("mutation($id: ID!) {{ delete{t}(id: $id) {{ deletedId }} }}")
}

fn read_op(table: &Table) -> String {
    format!("query($id: ID!) {{ {}(id: $id) {{ {} }} }}", table_names(table).one, selection(table))
}

/// A valid JSON value of a shape; `n` varies it.
fn json_of(shape: Shape, n: i64) -> Json {
    match shape {
        Shape::Any | Shape::Object => json!({"k": n, "nested": {"list": [n, "x"]}}),
        Shape::Array => json!([n, {"k": "v"}]),
        Shape::ArrayOfObjects | Shape::Steps => {
            json!([{"input": format!("question {n}"), "output": {"answer": n}}, {"input": "q2", "output": "done", "error": null}])
        }
        Shape::ArrayOfStrings => json!([format!("item {n}"), "other"]),
        Shape::Nodes => {
            json!([{"id": "n1", "type": "start", "data": {}}, {"id": "n2", "type": "llm", "data": {"n": n}}])
        }
        Shape::Edges => json!([{"id": "e1", "source": "n1", "target": "n2"}]),
    }
}

/// A valid input value for a column of `table` in the world's workspace A; `n` varies it
/// (0 for creates, 1 for patches).
fn valid(w: &World, table: &Table, column: &Column, n: i64) -> Json {
    if let Some(fk) = column.references {
        return match fk.table {
            "users" => json!(w.owner_a),
            other => json!(w.a[other]),
        };
    }
    let unique = table.unique_keys.iter().any(|key| key.contains(&column.name));
    match column.kind {
        Kind::Enum(values) => {
            let value = values[(n as usize) % values.len()];
            json!(names::enum_value(value))
        }
        Kind::Int => {
            let min = column.min.unwrap_or(0.0) as i64;
            json!(if unique { min + 1000 + n } else { min + n })
        }
        Kind::Real => match (column.min, column.max) {
            (Some(min), Some(max)) => json!(min + (max - min) * if n == 0 { 0.5 } else { 0.25 }),
            (Some(min), None) => json!(min + 1.5 + n as f64),
            _ => json!(2.5 + n as f64),
        },
        Kind::Bool => json!(n % 2 == 1),
        Kind::Timestamp => json!(fixtures::timestamp(100 + n)),
        Kind::Date => json!(fixtures::date(1000 + n)),
        Kind::Json => json_of(policy::shape(table, column), n),
        Kind::Text if column.name == "email" => json!(format!("new-{}@example.com", uuid::Uuid::new_v4().simple())),
        Kind::Text | Kind::Id => {
            json!(format!("{}-{n}-{}", column.name, &uuid::Uuid::new_v4().simple().to_string()[..8]))
        }
    }
}

/// A full create input for a table in workspace A (every input but the server-defaulted
/// versions).
fn create_input(w: &World, table: &'static Table) -> serde_json::Map<String, Json> {
    let mut input = serde_json::Map::new();
    for column in policy::create_columns(table) {
        if column.name == "version" {
            continue;
        }
        input.insert(names::column_field(column), valid(w, table, column, 0));
    }
    if table.name == "integrations" {
        input.insert("apiKey".into(), json!("sk-test-secret-key"));
    }
    input
}

/// Whether a table has a unique key made only of references and enums, which the world's
/// own row of that table already holds.
fn key_taken_by_world(table: &Table) -> bool {
    table.unique_keys.iter().any(|key| {
        key.iter().all(|c| table.column(c).is_some_and(|c| c.references.is_some() || matches!(c.kind, Kind::Enum(_))))
    })
}

fn same(column: &Column, sent: &Json, got: &Json) -> bool {
    match (column.kind, sent, got) {
        (Kind::Real, Json::Number(a), Json::Number(b)) => (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-9,
        _ => sent == got,
    }
}

#[test]
fn every_table_has_its_promised_mutations() {
    let schema = iofold_graph::graphql::build_schema().sdl();
    let mutation = schema.split("type Mutation {").nth(1).unwrap().split("\n}").next().unwrap().to_owned();
    for table in catalog::tables() {
        let promised = PROMISED
            .iter()
            .find(|(name, _)| *name == table.name)
            .unwrap_or_else(|| panic!("{}: decide which mutations it has (api.md) and list it in PROMISED", table.name))
            .1;
        let p = policy::policy(table);
        let t = table.type_name;
        for (letter, op, present) in [
            ('C', "create", p.create.is_some()),
            ('U', "update", p.update.is_some()),
            ('D', "delete", p.delete.is_some()),
        ] {
            assert_eq!(present, promised.contains(letter), "{}: {op}", table.name);
            let signature = match op {
                "create" => format!("\tcreate{t}(input: Create{t}Input!): Create{t}Payload!"),
                "update" => format!("\tupdate{t}(id: ID!, patch: {t}Patch!): Update{t}Payload!"),
                _ => format!("\tdelete{t}(id: ID!): Delete{t}Payload!"),
            };
            assert_eq!(mutation.contains(&signature), present, "{}: {signature}", table.name);
        }
        if table.append_only {
            assert!(!promised.contains('U'), "{} is append-only", table.name);
        }
        // Never inputs: ids, timestamps of the row, the scope key of a patch.
        for column in policy::patch_columns(table) {
            assert!(!matches!(column.name, "id" | "created_at" | "updated_at"));
            assert_ne!(
                Some(column.name),
                policy::scope_column(table),
                "{}: the scope key is not patchable",
                table.name
            );
        }
    }
    for domain in [
        "rateTrace(",
        "recordEvalExecutions(",
        "importTraces(",
        "addTasksetTasks(",
        "activateEval(",
        "activateAgentVersion(",
        "updateJobProgress(",
        "cancelJob(",
        "retryJob(",
        "acknowledgeAlert(",
        "resolveAlert(",
        "addWorkspaceMember(",
        "updateWorkspaceMemberRole(",
        "removeWorkspaceMember(",
        "createApiToken(",
        "revokeApiToken(",
        "startExecution(",
    ] {
        assert!(mutation.contains(domain), "{domain}");
    }
}

both_backends! {
    async fn every_writable_table_round_trips(backend: Backend) {
        let w = world(backend).await;
        let started = std::time::Instant::now();
        // Children first: freeing a unique key the world's row holds cascades only to tables
        // already done.
        let tables: Vec<&'static Table> = catalog::tables().collect::<Vec<_>>().into_iter().rev().collect();
        for table in tables {
            let p = policy::policy(table);
            let one = table_names(table).one;
            let mut target = w.a[table.name].clone();
            if p.create.is_some() {
                if key_taken_by_world(table) {
                    execute(w.db(), &format!("DELETE FROM {} WHERE id = {}", table.name, quote(&w.a[table.name]))).await.unwrap();
                }
                let before = w.rows(table.name).await;
                let input = create_input(&w, table);
                let data = w.as_writer(table, p.create, &create_op(table), json!({"input": input})).await;
                let row = &data[format!("create{}", table.type_name)][&one];
                let id = row["id"].as_str().unwrap().to_owned();
                assert!(id.starts_with(&format!("{}_", table.id_prefix)), "{}: a server id: {id}", table.name);
                assert_eq!(row["createdAt"], row["updatedAt"], "{}", table.name);
                for column in policy::create_columns(table) {
                    let field = names::column_field(column);
                    if let Some(sent) = input.get(&field) {
                        assert!(same(column, sent, &row[&field]), "{}.{field}: sent {sent}, got {}", table.name, row[&field]);
                    }
                }
                assert_eq!(w.rows(table.name).await, before + 1, "{}: one row more", table.name);
                target = id;
            }
            if p.update.is_some() {
                let read = w.app.graphql_admin(&read_op(table), json!({"id": target})).await;
                let old = read.data()[&one].clone();
                let mut patch = serde_json::Map::new();
                let mut cleared = None;
                for column in policy::patch_columns(table) {
                    let field = names::column_field(column);
                    if column.references.is_some() {
                        continue;
                    }
                    if column.nullable && cleared.is_none() && !old[&field].is_null() {
                        cleared = Some(column);
                        patch.insert(field, Json::Null);
                    } else {
                        patch.insert(field, valid(&w, table, column, 1));
                    }
                }
                if table.name == "integrations" {
                    patch.insert("apiKey".into(), json!("sk-rotated"));
                }
                let data = w.as_writer(table, p.update, &update_op(table), json!({"id": target, "patch": patch})).await;
                let row = &data[format!("update{}", table.type_name)][&one];
                assert_eq!(row["id"], json!(target));
                assert_eq!(row["createdAt"], old["createdAt"], "{}: createdAt never changes", table.name);
                assert!(row["updatedAt"].as_str().unwrap() > old["updatedAt"].as_str().unwrap(), "{}: updatedAt moves: {} -> {}", table.name, old["updatedAt"], row["updatedAt"]);
                for column in policy::patch_columns(table) {
                    let field = names::column_field(column);
                    match patch.get(&field) {
                        Some(sent) if table.name == "execution_steps" && field == "status" => {
                            assert_eq!(sent, &json!("RUNNING"));
                            assert_eq!(row[&field], json!("RUNNING"));
                        }
                        Some(sent) => assert!(same(column, sent, &row[&field]), "{}.{field}: sent {sent}, got {}", table.name, row[&field]),
                        None => assert_eq!(row[&field], old[&field], "{}.{field}: absent fields stay", table.name),
                    }
                }
                if let Some(column) = cleared {
                    assert!(row[names::column_field(column)].is_null(), "{}.{}: null clears", table.name, column.name);
                }
                // Fields a patch never takes stay as they were.
                for column in table.columns.iter().filter(|c| !names::is_secret(c)) {
                    let field = names::column_field(column);
                    let derived = matches!((table.name, column.name), ("taskset_tasks", "content_hash") | ("execution_steps", "started_at"));
                    if !patch.contains_key(&field) && column.name != "updated_at" && !derived {
                        assert_eq!(row[&field], old[&field], "{}.{field}", table.name);
                    }
                }
            }
            if p.delete.is_some() {
                let before = w.rows(table.name).await;
                let data = w.as_writer(table, p.delete, &delete_op(table), json!({"id": target})).await;
                assert_eq!(data[format!("delete{}", table.type_name)]["deletedId"], json!(target));
                assert!(w.rows(table.name).await < before, "{}: the row is gone", table.name);
                let read = w.app.graphql_admin(&read_op(table), json!({"id": target})).await;
                assert_eq!(read.data()[&one], Json::Null, "{}", table.name);
            }
        }
        eprintln!("round trips: {:?}", started.elapsed());
    }
}

/// Bad values of a column, each with the code it must get and the field it must name.
fn bad_values(w: &World, table: &'static Table, column: &'static Column) -> Vec<(Json, &'static str)> {
    let mut bad = Vec::new();
    if let Some(fk) = column.references {
        let other_workspace = match fk.table {
            "tools" => None,
            "users" => Some(w.b["users"].clone()),
            other => Some(w.b[other].clone()),
        };
        if let Some(id) = other_workspace {
            bad.push((json!(id), "NOT_FOUND"));
        }
        let missing = format!("{}_00000000-0000-7000-8000-000000000000", catalog::table(fk.table).unwrap().id_prefix);
        bad.push((json!(missing), "NOT_FOUND"));
        return bad;
    }
    match column.kind {
        Kind::Enum(_) => bad.push((json!("NOT_A_VALUE"), "GRAPHQL_VALIDATION_FAILED")),
        Kind::Int | Kind::Real => {
            if let Some(min) = column.min {
                bad.push((
                    if column.kind == Kind::Int { json!(min as i64 - 1) } else { json!(min - 0.5) },
                    "BAD_USER_INPUT",
                ));
            }
            if let Some(max) = column.max {
                bad.push((
                    if column.kind == Kind::Int { json!(max as i64 + 1) } else { json!(max + 0.5) },
                    "BAD_USER_INPUT",
                ));
            }
        }
        Kind::Json => match policy::shape(table, column) {
            Shape::Any => {}
            Shape::Object => bad.push((json!([1]), "BAD_USER_INPUT")),
            Shape::Nodes => bad.push((json!([{"id": 1, "type": "x"}]), "BAD_USER_INPUT")),
            Shape::Edges => bad.push((json!([{"id": "e", "source": "n1"}]), "BAD_USER_INPUT")),
            _ => bad.push((json!({"not": "an array"}), "BAD_USER_INPUT")),
        },
        Kind::Text if column.name == "email" => {
            bad.push((json!("not-an-email"), "BAD_USER_INPUT"));
            bad.push((json!(format!("{}@example.com", "a".repeat(320))), "BAD_USER_INPUT"));
        }
        Kind::Text => match policy::text_limit(table, column) {
            policy::TextLimit::Chars(n) => bad.push((json!("x".repeat(n + 1)), "BAD_USER_INPUT")),
            policy::TextLimit::Bytes(n) => bad.push((json!("x".repeat(n + 1)), "BAD_USER_INPUT")),
        },
        Kind::Timestamp => bad.push((json!("yesterday"), "BAD_USER_INPUT")),
        Kind::Date => bad.push((json!("2026-02-30"), "BAD_USER_INPUT")),
        _ => {}
    }
    bad
}

fn assert_rejected(table: &Table, field: &str, response: &crate::support::app::TestResponse, code: &str) {
    assert_eq!(response.error_code(), Some(code), "{}.{field}: {}", table.name, response.body);
    if code == "BAD_USER_INPUT" {
        let named = response.body["errors"][0]["extensions"]["field"].as_str().unwrap_or_default();
        assert!(named == field || named.ends_with(&format!(".{field}")), "{}.{field}: names `{named}`", table.name);
    }
    let data = &response.body["data"];
    assert!(data.is_null() || data.as_object().is_some_and(|d| d.values().all(Json::is_null)), "{}", response.body);
}

both_backends! {
    async fn bad_input_is_rejected_before_the_database(backend: Backend) {
        let w = world(backend).await;
        let big_text_tried = &mut std::collections::HashSet::new();
        for table in catalog::tables() {
            let p = policy::policy(table);
            let before = w.rows(table.name).await;
            if p.create.is_some() {
                let base = create_input(&w, table);
                for column in policy::create_columns(table) {
                    let field = names::column_field(column);
                    for (value, code) in bad_values(&w, table, column) {
                        if value.as_str().is_some_and(|s| s.len() > 100_000) && !big_text_tried.insert(table.name) {
                            continue; // one 1 MiB string per table is enough
                        }
                        let mut input = base.clone();
                        input.insert(field.clone(), value);
                        let response = match p.create {
                            Some(Who::Server) => w.app.graphql_admin(&create_op(table), json!({"input": input})).await,
                            _ => w.app.graphql(Some(&w.token_a), &create_op(table), json!({"input": input})).await,
                        };
                        assert_rejected(table, &field, &response, code);
                    }
                }
                assert_eq!(w.rows(table.name).await, before, "{}: bad creates leave no row", table.name);
            }
            if p.update.is_some() {
                let id = &w.a[table.name];
                let old = w.app.graphql_admin(&read_op(table), json!({"id": id})).await.data().clone();
                for column in policy::patch_columns(table) {
                    let field = names::column_field(column);
                    let mut values = bad_values(&w, table, column);
                    if !column.nullable {
                        values.push((Json::Null, "BAD_USER_INPUT"));
                    }
                    for (value, code) in values {
                        if value.as_str().is_some_and(|s| s.len() > 100_000) {
                            continue;
                        }
                        let vars = json!({"id": id, "patch": {field.clone(): value}});
                        let response = match p.update {
                            Some(Who::Server) | Some(Who::SelfUser) => w.app.graphql_admin(&update_op(table), vars).await,
                            _ => w.app.graphql(Some(&w.token_a), &update_op(table), vars).await,
                        };
                        assert_rejected(table, &field, &response, code);
                    }
                }
                let now = w.app.graphql_admin(&read_op(table), json!({"id": id})).await.data().clone();
                assert_eq!(old, now, "{}: bad patches change nothing", table.name);
            }
        }
        // Rules on whole rows.
        let gepa = table("gepa_runs");
        let mut input = create_input(&w, gepa);
        input.insert("trainSplit".into(), json!(0.8));
        input.insert("valSplit".into(), json!(0.5));
        let response = w.app.graphql(Some(&w.token_a), &create_op(gepa), json!({"input": input})).await;
        assert_rejected(gepa, "valSplit", &response, "BAD_USER_INPUT");
        let patch = json!({"id": w.a["gepa_runs"], "patch": {"trainSplit": 0.9, "valSplit": 0.2}});
        let response = w.app.graphql(Some(&w.token_a), &update_op(gepa), patch).await;
        assert_rejected(gepa, "valSplit", &response, "BAD_USER_INPUT");
        let workflows = table("workflows");
        let mut input = create_input(&w, workflows);
        input.insert("edges".into(), json!([{"id": "e1", "source": "n1", "target": "nowhere"}]));
        let response = w.app.graphql(Some(&w.token_a), &create_op(workflows), json!({"input": input})).await;
        assert_rejected(workflows, "edges", &response, "BAD_USER_INPUT");
        let patch = json!({"id": w.a["workflows"], "patch": {"nodes": [{"id": "only", "type": "x"}], "edges": [{"id": "e", "source": "only", "target": "gone"}]}});
        let response = w.app.graphql(Some(&w.token_a), &update_op(workflows), patch).await;
        assert_rejected(workflows, "edges", &response, "BAD_USER_INPUT");
        // A version of another agent of the same workspace is no parent.
        let other_agent = w.fx.insert("agents", &w.a["workspaces"], &[]).await;
        let foreign_version = w.fx.insert("agent_versions", &w.a["workspaces"], &[("agent_id", (&other_agent).into())]).await;
        let versions = table("agent_versions");
        let mut input = create_input(&w, versions);
        input.insert("parentVersionId".into(), json!(foreign_version));
        let response = w.app.graphql(Some(&w.token_a), &create_op(versions), json!({"input": input})).await;
        assert_rejected(versions, "parentVersionId", &response, "BAD_USER_INPUT");
        // Unique keys are conflicts naming the key.
        let integrations = table("integrations");
        let name = w.app.graphql_admin(&read_op(integrations), json!({"id": w.a["integrations"]})).await.data()["integration"]["name"].clone();
        let mut input = create_input(&w, integrations);
        input.insert("name".into(), name);
        let response = w.app.graphql(Some(&w.token_a), &create_op(integrations), json!({"input": input})).await;
        assert_eq!(response.error_code(), Some("CONFLICT"), "{}", response.body);
        assert_eq!(response.body["errors"][0]["extensions"]["key"], "integrations_workspace_id_name_key");
    }
}

both_backends! {
    async fn another_workspace_is_out_of_reach(backend: Backend) {
        let w = world(backend).await;
        for table in catalog::tables() {
            let p = policy::policy(table);
            if matches!(table.scope, Scope::Global | Scope::AdminOnly | Scope::SharedUsers | Scope::User(_)) {
                continue;
            }
            let id = &w.b[table.name];
            let snapshot = w.app.graphql_admin(&read_op(table), json!({"id": id})).await.data().clone();
            if p.update.is_some() {
                let patch: serde_json::Map<String, Json> = policy::patch_columns(table)
                    .into_iter()
                    .filter(|c| c.references.is_none())
                    .take(1)
                    .map(|c| (names::column_field(c), valid(&w, table, c, 1)))
                    .collect();
                let response = w.app.graphql(Some(&w.token_a), &update_op(table), json!({"id": id, "patch": patch})).await;
                assert_eq!(response.error_code(), Some("NOT_FOUND"), "{}: {}", table.name, response.body);
            }
            if p.delete.is_some() {
                let response = w.app.graphql(Some(&w.token_a), &delete_op(table), json!({"id": id})).await;
                assert_eq!(response.error_code(), Some("NOT_FOUND"), "{}: {}", table.name, response.body);
                let missing = format!("{}_00000000-0000-7000-8000-000000000000", table.id_prefix);
                let response_missing = w.app.graphql(Some(&w.token_a), &delete_op(table), json!({"id": missing})).await;
                assert_eq!(response_missing.error_code(), Some("NOT_FOUND"));
            }
            let after = w.app.graphql_admin(&read_op(table), json!({"id": id})).await.data().clone();
            assert_eq!(snapshot, after, "{}: B's row is unchanged", table.name);
            if let (Some(_), Some(column)) = (p.create, policy::scope_column(table)) {
                let before = w.rows(table.name).await;
                let parent = table.column(column).unwrap().references.unwrap().table;
                let mut input = create_input(&w, table);
                input.insert(names::camel(column), json!(w.b[parent]));
                let response = w.app.graphql(Some(&w.token_a), &create_op(table), json!({"input": input})).await;
                assert_eq!(response.error_code(), Some("NOT_FOUND"), "{}: {}", table.name, response.body);
                assert_eq!(w.rows(table.name).await, before, "{}", table.name);
            }
        }
        // Domain mutations: B's rows do not exist for A.
        for (op, vars) in [
            ("mutation($id: ID!) { rateTrace(traceId: $id, rating: POSITIVE) { created } }", json!({"id": w.b["traces"]})),
            ("mutation($id: ID!) { activateEval(id: $id) { eval { id } } }", json!({"id": w.b["evals"]})),
            ("mutation($id: ID!) { cancelJob(id: $id) { job { id } } }", json!({"id": w.b["jobs"]})),
            ("mutation($id: ID!) { acknowledgeAlert(id: $id) { performanceAlert { id } } }", json!({"id": w.b["performance_alerts"]})),
            ("mutation($id: ID!) { startExecution(workflowId: $id) { execution { id } } }", json!({"id": w.b["workflows"]})),
            ("mutation($id: ID!) { importTraces(workspaceId: $id, source: LANGFUSE, traces: []) { imported } }", json!({"id": w.b["workspaces"]})),
            ("mutation($id: ID!) { removeWorkspaceMember(id: $id) { deletedId } }", json!({"id": w.b["workspace_members"]})),
        ] {
            let response = w.app.graphql(Some(&w.token_a), op, vars).await;
            assert_eq!(response.error_code(), Some("NOT_FOUND"), "{op}: {}", response.body);
        }
        // A trace of B in an execution recorded by A.
        let op = "mutation($e: ID!, $t: ID!) { recordEvalExecutions(evalId: $e, executions: [{traceId: $t}]) { eval { executionCount } } }";
        let response = w.app.graphql(Some(&w.token_a), op, json!({"e": w.a["evals"], "t": w.b["traces"]})).await;
        assert_eq!(response.error_code(), Some("NOT_FOUND"), "{}", response.body);
    }
}

both_backends! {
    async fn roles_decide_who_writes(backend: Backend) {
        let w = world(backend).await;
        for table in catalog::tables() {
            let p = policy::policy(table);
            if let Some(Who::Role(_)) = p.create {
                let response = w.app.graphql(Some(&w.viewer_a), &create_op(table), json!({"input": create_input(&w, table)})).await;
                assert_eq!(response.error_code(), Some("FORBIDDEN"), "viewer creates {}: {}", table.name, response.body);
            }
            if let Some(Who::Role(_)) = p.update {
                let patch: serde_json::Map<String, Json> = policy::patch_columns(table)
                    .into_iter()
                    .filter(|c| c.references.is_none())
                    .take(1)
                    .map(|c| (names::column_field(c), valid(&w, table, c, 1)))
                    .collect();
                let response = w.app.graphql(Some(&w.viewer_a), &update_op(table), json!({"id": w.a[table.name], "patch": patch})).await;
                assert_eq!(response.error_code(), Some("FORBIDDEN"), "viewer updates {}: {}", table.name, response.body);
            }
            if let Some(Who::Role(_)) = p.delete {
                let response = w.app.graphql(Some(&w.viewer_a), &delete_op(table), json!({"id": w.a[table.name]})).await;
                assert_eq!(response.error_code(), Some("FORBIDDEN"), "viewer deletes {}: {}", table.name, response.body);
            }
            if let Some(Who::Server) = p.create {
                let response = w.app.graphql(Some(&w.token_a), &create_op(table), json!({"input": create_input(&w, table)})).await;
                assert_eq!(response.error_code(), Some("FORBIDDEN"), "an owner writes {}: {}", table.name, response.body);
                let response = w.app.graphql(Some(&w.token_a), &delete_op(table), json!({"id": w.a[table.name]})).await;
                assert_eq!(response.error_code(), Some("FORBIDDEN"), "{}", table.name);
            }
        }
        assert!(w.fx.backend() == backend);
        let response = w.app.graphql(Some(&w.viewer_a), "mutation($id: ID!) { rateTrace(traceId: $id, rating: NEGATIVE) { created } }", json!({"id": w.a["traces"]})).await;
        assert_eq!(response.error_code(), Some("FORBIDDEN"));
        // A user edits themself, not others; the last owner cannot go.
        let response = w.app.graphql(Some(&w.viewer_a), "mutation($id: ID!) { updateUser(id: $id, patch: {name: \"x\"}) { user { id } } }", json!({"id": w.owner_a})).await;
        assert_eq!(response.error_code(), Some("FORBIDDEN"), "{}", response.body);
        w.app.graphql(Some(&w.token_a), "mutation { createWorkspace(input: {name: \"solo\"}) { workspace { id } } }", json!({})).await.data();
        let response = w.app.graphql(Some(&w.token_a), "mutation($id: ID!) { deleteUser(id: $id) { deletedId } }", json!({"id": w.owner_a})).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "the last owner of a workspace stays: {}", response.body);
        // Anonymous callers write nothing.
        let response = w.app.graphql(None, "mutation { createWorkspace(input: {name: \"x\"}) { workspace { id } } }", json!({})).await;
        assert_eq!(response.error_code(), Some("UNAUTHENTICATED"));
    }
}

fn import_op() -> &'static str {
    "mutation($ws: ID!, $traces: [TraceImportInput!]!) { importTraces(workspaceId: $ws, source: LANGFUSE, traces: $traces) { imported updated traces { id traceId stepCount hasErrors inputPreview outputPreview } } }"
}

fn import_batch(n: usize, tag: &str) -> Vec<Json> {
    (0..n)
        .map(|i| {
            json!({
                "traceId": format!("{tag}-{i}"),
                "timestamp": fixtures::timestamp(i as i64),
                "steps": [{"input": format!("question {i}"), "output": "thinking"}, {"output": {"answer": i}, "error": if i % 2 == 0 { json!(null) } else { json!("boom") }}],
                "metadata": {"i": i},
            })
        })
        .collect()
}

both_backends! {
    async fn bulk_imports_are_all_or_nothing_and_idempotent(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let (ws, owner) = fx.workspace_with_owner().await;
        let token = fx.token_for(&owner).await;
        let in_ws = format!("workspace_id = {}", quote(&ws));
        let started = std::time::Instant::now();

        // The 500th trace is invalid: nothing is imported.
        let mut batch = import_batch(1000, "t");
        batch[499]["steps"] = json!("not an array");
        let response = app.graphql(Some(&token), import_op(), json!({"ws": ws, "traces": batch})).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
        assert_eq!(response.body["errors"][0]["extensions"]["field"], "traces[499].steps");
        assert_eq!(count(&app.state.db, "traces", Some(&in_ws)).await, 0);

        // The database refuses the 500th row (a trigger): the rows before it are rolled back.
        let trigger = match backend {
            Backend::Sqlite => vec!["CREATE TRIGGER refuse_t499 BEFORE INSERT ON traces WHEN NEW.trace_id = 't-499' BEGIN SELECT RAISE(ABORT, 'refused'); END".to_owned()],
            Backend::Postgres => vec![
                "CREATE FUNCTION refuse_t499() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.trace_id = 't-499' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$".to_owned(),
                "CREATE TRIGGER refuse_t499 BEFORE INSERT ON traces FOR EACH ROW EXECUTE FUNCTION refuse_t499()".to_owned(),
            ],
        };
        for sql in &trigger {
            execute(&app.state.db, sql).await.unwrap();
        }
        let batch = import_batch(1000, "t");
        let response = app.graphql(Some(&token), import_op(), json!({"ws": ws, "traces": batch})).await;
        assert_eq!(response.error_code(), Some("INTERNAL_SERVER_ERROR"), "{}", response.body);
        assert_eq!(count(&app.state.db, "traces", Some(&in_ws)).await, 0, "all or nothing");
        let drop = if backend == Backend::Sqlite { "DROP TRIGGER refuse_t499" } else { "DROP TRIGGER refuse_t499 ON traces" };
        execute(&app.state.db, drop).await.unwrap();

        // The same 1,000 traces twice: 1,000 rows, the second time all updated.
        let first = app.graphql(Some(&token), import_op(), json!({"ws": ws, "traces": batch})).await;
        let first = first.data()["importTraces"].clone();
        assert_eq!((first["imported"].as_i64(), first["updated"].as_i64()), (Some(1000), Some(0)));
        let traces = first["traces"].as_array().unwrap();
        assert_eq!(traces.len(), 1000);
        assert_eq!(traces[7]["traceId"], "t-7");
        assert_eq!(traces[7]["stepCount"], 2);
        assert_eq!(traces[7]["hasErrors"], true);
        assert_eq!(traces[8]["hasErrors"], false);
        assert_eq!(traces[7]["inputPreview"], "question 7");
        assert_eq!(traces[7]["outputPreview"], r#"{"answer":7}"#);
        let mut again = import_batch(1000, "t");
        again[3]["steps"] = json!([{"input": "changed"}]);
        let second = app.graphql(Some(&token), import_op(), json!({"ws": ws, "traces": again})).await;
        let second = second.data()["importTraces"].clone();
        assert_eq!((second["imported"].as_i64(), second["updated"].as_i64()), (Some(0), Some(1000)));
        assert_eq!(second["traces"][3]["id"], first["traces"][3]["id"], "the same row");
        assert_eq!(second["traces"][3]["inputPreview"], "changed");
        assert_eq!(second["traces"][3]["stepCount"], 1);
        assert_eq!(count(&app.state.db, "traces", Some(&in_ws)).await, 1000);

        // Limits and duplicates.
        let response = app.graphql(Some(&token), import_op(), json!({"ws": ws, "traces": import_batch(1001, "x")})).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
        let mut dup = import_batch(2, "d");
        dup[1]["traceId"] = json!("d-0");
        let response = app.graphql(Some(&token), import_op(), json!({"ws": ws, "traces": dup})).await;
        assert_eq!(response.body["errors"][0]["extensions"]["field"], "traces[1].traceId");
        eprintln!("imports: {:?}", started.elapsed());
    }
}

/// The eval's counters, and what the view says they should be.
async fn counters(app: &TestApp, token: &str, eval: &str) -> ((i64, i64), (i64, i64)) {
    let response = app
        .graphql(
            Some(token),
            "query($id: ID!) { eval(id: $id) { executionCount contradictionCount } }",
            json!({"id": eval}),
        )
        .await;
    let stored = &response.data()["eval"];
    let executions = count(&app.state.db, "eval_executions", Some(&format!("eval_id = {}", quote(eval)))).await;
    let contradictions = count(
        &app.state.db,
        "eval_comparison",
        Some(&format!("eval_id = {} AND is_contradiction = TRUE", quote(eval))),
    )
    .await;
    (
        (stored["executionCount"].as_i64().unwrap(), stored["contradictionCount"].as_i64().unwrap()),
        (executions, contradictions),
    )
}

both_backends! {
    async fn eval_counters_follow_ratings_and_executions(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let (ws, owner) = fx.workspace_with_owner().await;
        let token = fx.token_for(&owner).await;
        let agent = fx.insert("agents", &ws, &[]).await;
        let eval = fx.insert("evals", &ws, &[("agent_id", (&agent).into())]).await;
        let other_eval = fx.insert("evals", &ws, &[("agent_id", (&agent).into()), ("version", 2i64.into())]).await;
        let traces: Vec<String> = {
            let mut t = Vec::new();
            for _ in 0..4 { t.push(fx.insert("traces", &ws, &[]).await); }
            t
        };
        let record = "mutation($e: ID!, $x: [EvalExecutionInput!]!) { recordEvalExecutions(evalId: $e, executions: $x) { eval { executionCount contradictionCount } evalExecutions { id traceId predictedResult } } }";
        let executions = json!([
            {"traceId": traces[0], "predictedResult": true},
            {"traceId": traces[1], "predictedResult": false},
            {"traceId": traces[2], "predictedResult": true},
            {"traceId": traces[3]},
        ]);
        let recorded = app.graphql(Some(&token), record, json!({"e": eval, "x": executions})).await;
        assert_eq!(recorded.data()["recordEvalExecutions"]["eval"], json!({"executionCount": 4, "contradictionCount": 0}));
        assert_eq!(recorded.data()["recordEvalExecutions"]["evalExecutions"][1]["traceId"], json!(traces[1]));
        app.graphql(Some(&token), record, json!({"e": other_eval, "x": [{"traceId": traces[1], "predictedResult": true}]})).await.data();

        let rate = "mutation($t: ID!, $r: FeedbackRating!) { rateTrace(traceId: $t, rating: $r, ratingDetail: \"why\") { created feedback { id rating ratingDetail } } }";
        for (trace, rating) in [(0, "POSITIVE"), (1, "POSITIVE"), (2, "NEGATIVE")] {
            let rated = app.graphql(Some(&token), rate, json!({"t": traces[trace], "r": rating})).await;
            assert_eq!(rated.data()["rateTrace"]["created"], true);
        }
        let (stored, real) = counters(&app, &token, &eval).await;
        assert_eq!(stored, real);
        assert_eq!(stored, (4, 2), "positive+fail and negative+pass");
        assert_eq!(counters(&app, &token, &other_eval).await.0, (1, 0));

        // Changing a rating: the trace's one feedback row is updated, every eval recounted.
        let rated = app.graphql(Some(&token), rate, json!({"t": traces[1], "r": "NEGATIVE"})).await;
        assert_eq!(rated.data()["rateTrace"]["created"], false);
        assert_eq!(count(&app.state.db, "feedback", Some(&format!("trace_id = {}", quote(&traces[1])))).await, 1);
        let (stored, real) = counters(&app, &token, &eval).await;
        assert_eq!((stored, real), ((4, 1), (4, 1)));
        assert_eq!(counters(&app, &token, &other_eval).await, ((1, 1), (1, 1)));

        // Generic feedback writes, execution writes and trace deletes recount too.
        let feedback_id = rated.data()["rateTrace"]["feedback"]["id"].as_str().unwrap().to_owned();
        let updated = app.graphql(Some(&token), "mutation($id: ID!) { updateFeedback(id: $id, patch: {rating: POSITIVE}) { feedback { rating } } }", json!({"id": feedback_id})).await;
        assert_eq!(updated.data()["updateFeedback"]["feedback"]["rating"], "POSITIVE");
        assert_eq!(counters(&app, &token, &eval).await, ((4, 2), (4, 2)));
        app.graphql(Some(&token), "mutation($id: ID!) { deleteFeedback(id: $id) { deletedId } }", json!({"id": feedback_id})).await.data();
        assert_eq!(counters(&app, &token, &eval).await, ((4, 1), (4, 1)));
        app.graphql(Some(&token), "mutation($id: ID!) { deleteTrace(id: $id) { deletedId } }", json!({"id": traces[2]})).await.data();
        assert_eq!(counters(&app, &token, &eval).await, ((3, 0), (3, 0)));
        let created = app.graphql(Some(&token), "mutation($e: ID!, $t: ID!) { createEvalExecution(input: {evalId: $e, traceId: $t, predictedResult: false}) { evalExecution { id } } }", json!({"e": eval, "t": traces[0]})).await;
        assert_eq!(counters(&app, &token, &eval).await, ((4, 1), (4, 1)));
        let id = created.data()["createEvalExecution"]["evalExecution"]["id"].clone();
        app.graphql(Some(&token), "mutation($id: ID!) { deleteEvalExecution(id: $id) { deletedId } }", json!({"id": id})).await.data();
        assert_eq!(counters(&app, &token, &eval).await, ((3, 0), (3, 0)));

        // Bulk limits.
        let many: Vec<Json> = (0..1001).map(|_| json!({"traceId": traces[0]})).collect();
        let response = app.graphql(Some(&token), record, json!({"e": eval, "x": many})).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
        assert_eq!(counters(&app, &token, &eval).await, ((3, 0), (3, 0)));
    }
}

both_backends! {
    async fn one_active_eval_and_version_per_agent(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let (ws, owner) = fx.workspace_with_owner().await;
        let token = fx.token_for(&owner).await;
        let agent = fx.insert("agents", &ws, &[]).await;
        let create = "mutation($a: ID!, $p: ID) { createEval(input: {agentId: $a, name: \"e\", code: \"def f(): pass\", parentEvalId: $p}) { eval { id version status parentEval { id } } } }";
        let first = app.graphql(Some(&token), create, json!({"a": agent})).await.data()["createEval"]["eval"].clone();
        let second = app.graphql(Some(&token), create, json!({"a": agent, "p": first["id"]})).await.data()["createEval"]["eval"].clone();
        assert_eq!((first["version"].as_i64(), second["version"].as_i64()), (Some(1), Some(2)), "max + 1");
        assert_eq!(second["parentEval"]["id"], first["id"]);
        let activate = "mutation($id: ID!) { activateEval(id: $id) { eval { id status activatedAt } agent { activeEval { id } } } }";
        for eval in [&first, &second, &first] {
            let done = app.graphql(Some(&token), activate, json!({"id": eval["id"]})).await;
            let done = &done.data()["activateEval"];
            assert_eq!(done["eval"]["status"], "ACTIVE");
            assert!(done["eval"]["activatedAt"].is_string());
            assert_eq!(done["agent"]["activeEval"]["id"], eval["id"]);
            let active = count(&app.state.db, "evals", Some(&format!("agent_id = {} AND status = 'active'", quote(&agent)))).await;
            assert_eq!(active, 1, "one active eval per agent");
        }
        let response = app.graphql(Some(&token), "mutation($id: ID!) { updateEval(id: $id, patch: {status: ACTIVE}) { eval { id } } }", json!({"id": second["id"]})).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
        // Archiving the active eval clears the agent's pointer.
        let archived = app.graphql(Some(&token), "mutation($id: ID!) { updateEval(id: $id, patch: {status: ARCHIVED}) { eval { agent { activeEval { id } } } } }", json!({"id": first["id"]})).await;
        assert_eq!(archived.data()["updateEval"]["eval"]["agent"]["activeEval"], Json::Null);

        let create = "mutation($a: ID!) { createAgentVersion(input: {agentId: $a, promptTemplate: \"t\", source: MANUAL}) { agentVersion { id version status } } }";
        let v1 = app.graphql(Some(&token), create, json!({"a": agent})).await.data()["createAgentVersion"]["agentVersion"].clone();
        let v2 = app.graphql(Some(&token), create, json!({"a": agent})).await.data()["createAgentVersion"]["agentVersion"].clone();
        assert_eq!((v1["version"].as_i64(), v2["version"].as_i64(), v1["status"].as_str()), (Some(1), Some(2), Some("CANDIDATE")));
        let activate = "mutation($id: ID!) { activateAgentVersion(id: $id) { agentVersion { status } agent { activeVersion { id } } } }";
        app.graphql(Some(&token), activate, json!({"id": v1["id"]})).await.data();
        let done = app.graphql(Some(&token), activate, json!({"id": v2["id"]})).await;
        assert_eq!(done.data()["activateAgentVersion"]["agent"]["activeVersion"]["id"], v2["id"]);
        let statuses = app.graphql(Some(&token), "query($id: ID!) { agentVersion(id: $id) { status } }", json!({"id": v1["id"]})).await;
        assert_eq!(statuses.data()["agentVersion"]["status"], "ARCHIVED");
        // An explicit version that exists is a conflict on the key.
        let response = app.graphql(Some(&token), "mutation($a: ID!) { createAgentVersion(input: {agentId: $a, version: 2, promptTemplate: \"t\", source: MANUAL}) { agentVersion { id } } }", json!({"a": agent})).await;
        assert_eq!(response.error_code(), Some("CONFLICT"));
        assert_eq!(response.body["errors"][0]["extensions"]["key"], "agent_versions_agent_id_version_key");
    }
}

both_backends! {
    async fn jobs_follow_their_transitions(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let (ws, owner) = fx.workspace_with_owner().await;
        let token = fx.token_for(&owner).await;
        let create = "mutation($ws: ID!) { createJob(input: {workspaceId: $ws, type: IMPORT, maxRetries: 1}) { job { id status progress } } }";
        let job = app.graphql(Some(&token), create, json!({"ws": ws})).await.data()["createJob"]["job"].clone();
        assert_eq!((job["status"].as_str(), job["progress"].as_i64()), (Some("QUEUED"), Some(0)));
        let id = job["id"].clone();
        let progress = "mutation($id: ID!, $p: Int, $s: JobStatus) { updateJobProgress(id: $id, progress: $p, status: $s) { job { status progress startedAt completedAt retryCount } } }";
        let step = |p: Option<i64>, s: Option<&str>| json!({"id": id, "p": p, "s": s});
        let running = app.graphql(Some(&token), progress, step(Some(10), Some("RUNNING"))).await;
        assert_eq!(running.data()["updateJobProgress"]["job"]["status"], "RUNNING");
        assert!(running.data()["updateJobProgress"]["job"]["startedAt"].is_string());
        app.graphql(Some(&token), progress, step(Some(40), None)).await.data();
        let back = app.graphql(Some(&token), progress, step(Some(20), None)).await;
        assert_eq!(back.error_code(), Some("BAD_USER_INPUT"));
        assert_eq!(back.body["errors"][0]["extensions"]["field"], "progress");
        let over = app.graphql(Some(&token), progress, step(Some(101), None)).await;
        assert_eq!(over.error_code(), Some("BAD_USER_INPUT"));
        let queued = app.graphql(Some(&token), progress, step(None, Some("QUEUED"))).await;
        assert_eq!(queued.error_code(), Some("BAD_USER_INPUT"), "running → queued only as a retry");
        // Retries until max_retries.
        let retry = "mutation($id: ID!) { retryJob(id: $id, error: \"boom\", errorCategory: \"transient\", delayMs: 500) { job { status retryCount progress nextRetryAt } jobRetry { attempt error delayMs } } }";
        let retried = app.graphql(Some(&token), retry, json!({"id": id})).await;
        let retried = &retried.data()["retryJob"];
        assert_eq!(retried["job"]["status"], "QUEUED");
        assert_eq!(retried["job"]["retryCount"], 1);
        assert_eq!(retried["job"]["progress"], 0, "a new attempt");
        assert_eq!(retried["jobRetry"], json!({"attempt": 1, "error": "boom", "delayMs": 500}));
        app.graphql(Some(&token), progress, step(Some(5), Some("RUNNING"))).await.data();
        let refused = app.graphql(Some(&token), retry, json!({"id": id})).await;
        assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"), "max_retries reached");
        assert_eq!(count(&app.state.db, "job_retry_history", None).await, 1);
        let done = app.graphql(Some(&token), progress, step(None, Some("COMPLETED"))).await;
        assert_eq!(done.data()["updateJobProgress"]["job"]["progress"], 100);
        assert!(done.data()["updateJobProgress"]["job"]["completedAt"].is_string());
        let cancel = app.graphql(Some(&token), "mutation($id: ID!) { cancelJob(id: $id) { job { status } } }", json!({"id": id})).await;
        assert_eq!(cancel.error_code(), Some("BAD_USER_INPUT"), "a completed job stays completed");
        let other = app.graphql(Some(&token), create, json!({"ws": ws})).await.data()["createJob"]["job"]["id"].clone();
        let cancel = app.graphql(Some(&token), "mutation($id: ID!) { cancelJob(id: $id) { job { status completedAt } } }", json!({"id": other})).await;
        assert_eq!(cancel.data()["cancelJob"]["job"]["status"], "CANCELLED");
    }
}

both_backends! {
    async fn alerts_members_and_tokens(backend: Backend) {
        let w = world(backend).await;
        let ws = w.a["workspaces"].clone();
        // Alerts are stamped with the caller.
        let fresh = w.fx.insert("performance_alerts", &ws, &[("eval_id", (&w.a["evals"]).into()), ("acknowledged_at", Value::Null), ("resolved_at", Value::Null)]).await;
        let ack = w.app.graphql(Some(&w.token_a), "mutation($id: ID!) { resolveAlert(id: $id) { performanceAlert { acknowledgedBy resolvedBy resolvedAt } } }", json!({"id": fresh})).await;
        let alert = &ack.data()["resolveAlert"]["performanceAlert"];
        assert_eq!((alert["acknowledgedBy"].as_str(), alert["resolvedBy"].as_str()), (Some(w.owner_a.as_str()), Some(w.owner_a.as_str())));

        // Members: added by email (a new user is created), roles changed, the last owner stays.
        let created = w.app.graphql(Some(&w.token_a), "mutation { createWorkspace(input: {name: \"team\"}) { workspace { id } } }", json!({})).await;
        let team = created.data()["createWorkspace"]["workspace"]["id"].as_str().unwrap().to_owned();
        let add = "mutation($ws: ID!, $e: String!, $r: WorkspaceMemberRole!) { addWorkspaceMember(workspaceId: $ws, email: $e, role: $r) { workspaceMember { id role user { email } } } }";
        let added = w.app.graphql(Some(&w.token_a), add, json!({"ws": team, "e": "New.Person@Example.com", "r": "ADMIN"})).await;
        let member = added.data()["addWorkspaceMember"]["workspaceMember"].clone();
        assert_eq!(member["user"]["email"], "new.person@example.com");
        let again = w.app.graphql(Some(&w.token_a), add, json!({"ws": team, "e": "new.person@example.com", "r": "MEMBER"})).await;
        assert_eq!(again.error_code(), Some("CONFLICT"));
        let by_viewer = w.app.graphql(Some(&w.viewer_a), add, json!({"ws": ws, "e": "x@example.com", "r": "MEMBER"})).await;
        assert_eq!(by_viewer.error_code(), Some("FORBIDDEN"));
        let by_stranger = w.app.graphql(Some(&w.token_b), add, json!({"ws": team, "e": "x@example.com", "r": "MEMBER"})).await;
        assert_eq!(by_stranger.error_code(), Some("NOT_FOUND"));
        let owner_member = w.app.graphql(Some(&w.token_a), "query($ws: ID!) { workspaceMembers(workspaceId: $ws, filter: {role: {eq: OWNER}}) { nodes { id } } }", json!({"ws": team})).await.data()["workspaceMembers"]["nodes"][0]["id"].clone();
        let demote = "mutation($id: ID!, $r: WorkspaceMemberRole!) { updateWorkspaceMemberRole(id: $id, role: $r) { workspaceMember { role } } }";
        let response = w.app.graphql(Some(&w.token_a), demote, json!({"id": owner_member, "r": "MEMBER"})).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "the last owner stays: {}", response.body);
        let response = w.app.graphql(Some(&w.token_a), "mutation($id: ID!) { removeWorkspaceMember(id: $id) { deletedId } }", json!({"id": owner_member})).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
        let promoted = w.app.graphql(Some(&w.token_a), demote, json!({"id": member["id"], "r": "OWNER"})).await;
        assert_eq!(promoted.data()["updateWorkspaceMemberRole"]["workspaceMember"]["role"], "OWNER");
        let demoted = w.app.graphql(Some(&w.token_a), demote, json!({"id": owner_member, "r": "MEMBER"})).await;
        assert_eq!(demoted.data()["updateWorkspaceMemberRole"]["workspaceMember"]["role"], "MEMBER");
        let left = w.app.graphql(Some(&w.token_a), "mutation($id: ID!) { removeWorkspaceMember(id: $id) { deletedId } }", json!({"id": owner_member})).await;
        assert_eq!(left.data()["removeWorkspaceMember"]["deletedId"], owner_member, "a member may leave");
        let response = w.app.graphql(Some(&w.token_a), "mutation { createTool(input: {name: \"t\", description: \"d\", parametersSchema: {}, handlerKey: \"h\"}) { tool { id } } }", json!({})).await;
        assert_eq!(response.error_code(), Some("FORBIDDEN"));

        // Tokens: the secret is shown once and works; revoked, it does not.
        let created = w.app.graphql(Some(&w.token_b), "mutation { createApiToken(name: \"ci\") { token apiToken { id name revokedAt } } }", json!({})).await;
        let created = created.data()["createApiToken"].clone();
        let secret = created["token"].as_str().unwrap().to_owned();
        let me = w.app.graphql(Some(&secret), "{ me { id } }", json!({})).await;
        assert!(me.data()["me"]["id"].is_string());
        let past = w.app.graphql(Some(&w.token_b), "mutation { createApiToken(name: \"old\", expiresAt: \"2001-01-01T00:00:00Z\") { token } }", json!({})).await;
        assert_eq!(past.error_code(), Some("BAD_USER_INPUT"));
        let theirs = w.app.graphql(Some(&w.token_a), "mutation($id: ID!) { revokeApiToken(id: $id) { apiToken { id } } }", json!({"id": created["apiToken"]["id"]})).await;
        assert_eq!(theirs.error_code(), Some("NOT_FOUND"), "another user's token");
        let revoked = w.app.graphql(Some(&secret), "mutation($id: ID!) { revokeApiToken(id: $id) { apiToken { revokedAt } } }", json!({"id": created["apiToken"]["id"]})).await;
        assert!(revoked.data()["revokeApiToken"]["apiToken"]["revokedAt"].is_string());
        let me = w.app.graphql(Some(&secret), "{ me { id } }", json!({})).await;
        assert_eq!(me.error_code(), Some("UNAUTHENTICATED"));

        // A new workspace belongs to its creator.
        let created = w.app.graphql(Some(&w.token_b), "mutation { createWorkspace(input: {name: \"mine\"}) { workspace { id user { id } } } }", json!({})).await;
        let new_ws = created.data()["createWorkspace"]["workspace"]["id"].as_str().unwrap().to_owned();
        let members = count(w.db(), "workspace_members", Some(&format!("workspace_id = {} AND role = 'owner'", quote(&new_ws)))).await;
        assert_eq!(members, 1);
        let agent = w.app.graphql(Some(&w.token_b), "mutation($ws: ID!) { createAgent(input: {workspaceId: $ws, name: \"a\"}) { agent { id status } } }", json!({"ws": new_ws})).await;
        assert_eq!(agent.data()["createAgent"]["agent"]["status"], "DISCOVERED");
        let response = w.app.graphql(Some(&w.token_a), "mutation($id: ID!) { deleteWorkspace(id: $id) { deletedId } }", json!({"id": new_ws})).await;
        assert_eq!(response.error_code(), Some("NOT_FOUND"));
        let deleted = w.app.graphql(Some(&w.token_b), "mutation($id: ID!) { deleteWorkspace(id: $id) { deletedId } }", json!({"id": new_ws})).await;
        assert_eq!(deleted.data()["deleteWorkspace"]["deletedId"], json!(new_ws));

        // Integration keys are sealed, never returned.
        let integration = w.app.graphql(Some(&w.token_a), "mutation($ws: ID!) { createIntegration(input: {workspaceId: $ws, name: \"lf\", platform: LANGFUSE, apiKey: \"sk-lf-very-secret\"}) { integration { id } } }", json!({"ws": ws})).await;
        assert!(!integration.body.to_string().contains("sk-lf"));
        let id = integration.data()["createIntegration"]["integration"]["id"].as_str().unwrap().to_owned();
        #[derive(diesel::QueryableByName)]
        struct Sealed {
            #[diesel(sql_type = diesel::sql_types::Text)]
            api_key_encrypted: String,
        }
        let sealed: Vec<Sealed> = fixtures::load(w.db(), &format!("SELECT api_key_encrypted FROM integrations WHERE id = {}", quote(&id))).await.unwrap();
        assert!(!sealed[0].api_key_encrypted.contains("sk-lf"));
        assert_eq!(w.app.state.config.secrets.open(&sealed[0].api_key_encrypted).as_deref(), Some("sk-lf-very-secret"));
    }
}

both_backends! {
    async fn tasks_dedupe_and_workflows_run(backend: Backend) {
        let w = world(backend).await;
        let add = "mutation($t: ID!, $x: [TasksetTaskInput!]!) { addTasksetTasks(tasksetId: $t, tasks: $x) { added skipped tasksetTasks { userMessage contentHash } } }";
        let tasks = json!([
            {"userMessage": "hello", "source": "MANUAL"},
            {"userMessage": "hello", "expectedOutput": "", "source": "MANUAL"},
            {"userMessage": "bye", "expectedOutput": "ciao", "source": "TRACE", "sourceTraceId": w.a["traces"]},
        ]);
        let first = w.app.graphql(Some(&w.token_a), add, json!({"t": w.a["tasksets"], "x": tasks})).await;
        let first = &first.data()["addTasksetTasks"];
        assert_eq!((first["added"].as_i64(), first["skipped"].as_i64()), (Some(2), Some(1)), "null and empty expected output hash alike");
        assert_eq!(first["tasksetTasks"][0]["contentHash"], json!(iofold_graph::domain::task_content_hash("hello", None)));
        let second = w.app.graphql(Some(&w.token_a), add, json!({"t": w.a["tasksets"], "x": tasks})).await;
        assert_eq!(second.data()["addTasksetTasks"]["added"], 0);
        let foreign = json!([{"userMessage": "x", "source": "TRACE", "sourceTraceId": w.b["traces"]}]);
        let response = w.app.graphql(Some(&w.token_a), add, json!({"t": w.a["tasksets"], "x": foreign})).await;
        assert_eq!(response.error_code(), Some("NOT_FOUND"));
        // Changing a task's message recomputes its hash.
        let id = w.a["taskset_tasks"].clone();
        let changed = w.app.graphql(Some(&w.token_a), "mutation($id: ID!) { updateTasksetTask(id: $id, patch: {userMessage: \"new\", expectedOutput: null}) { tasksetTask { contentHash } } }", json!({"id": id})).await;
        assert_eq!(changed.data()["updateTasksetTask"]["tasksetTask"]["contentHash"], json!(iofold_graph::domain::task_content_hash("new", None)));

        // A workflow run: one pending step per node; the execution follows its steps.
        let workflow = w.app.graphql(Some(&w.token_a), "mutation($ws: ID!) { createWorkflow(input: {workspaceId: $ws, name: \"w\", nodes: [{id: \"a\", type: \"start\"}, {id: \"b\", type: \"end\"}], edges: [{id: \"e\", source: \"a\", target: \"b\"}]}) { workflow { id } } }", json!({"ws": w.a["workspaces"]})).await;
        let workflow = workflow.data()["createWorkflow"]["workflow"]["id"].clone();
        let started = w.app.graphql(Some(&w.token_a), "mutation($id: ID!) { startExecution(workflowId: $id, data: {q: 1}) { execution { id status user { id } } executionSteps { id nodeId status } } }", json!({"id": workflow})).await;
        let started = started.data()["startExecution"].clone();
        assert_eq!(started["execution"]["status"], "PENDING");
        assert_eq!(started["execution"]["user"]["id"], json!(w.owner_a));
        let steps = started["executionSteps"].as_array().unwrap().clone();
        assert_eq!(steps.iter().map(|s| s["nodeId"].as_str().unwrap()).collect::<Vec<_>>(), ["a", "b"]);
        let set = "mutation($id: ID!, $s: ExecutionStepStatus!) { updateExecutionStep(id: $id, patch: {status: $s}) { executionStep { status retryCount execution { status } } } }";
        let go = |i: usize, s: &str| json!({"id": steps[i]["id"], "s": s});
        let skipped = w.app.graphql(Some(&w.token_a), set, go(0, "COMPLETED")).await;
        assert_eq!(skipped.error_code(), Some("BAD_USER_INPUT"), "pending → completed skips running");
        let running = w.app.graphql(Some(&w.token_a), set, go(0, "RUNNING")).await;
        assert_eq!(running.data()["updateExecutionStep"]["executionStep"]["execution"]["status"], "RUNNING");
        // A failure with retries left goes back to pending and counts a retry.
        let failed = w.app.graphql(Some(&w.token_a), set, go(0, "FAILED")).await;
        assert_eq!(failed.data()["updateExecutionStep"]["executionStep"]["status"], "PENDING");
        assert_eq!(failed.data()["updateExecutionStep"]["executionStep"]["retryCount"], 1);
        for (i, status) in [(0, "RUNNING"), (0, "COMPLETED"), (1, "SKIPPED")] {
            w.app.graphql(Some(&w.token_a), set, go(i, status)).await.data();
        }
        let done = w.app.graphql(Some(&w.token_a), "query($id: ID!) { execution(id: $id) { status completedAt } }", json!({"id": started["execution"]["id"]})).await;
        assert_eq!(done.data()["execution"]["status"], "COMPLETED");
        let late = w.app.graphql(Some(&w.token_a), set, go(1, "RUNNING")).await;
        assert_eq!(late.error_code(), Some("BAD_USER_INPUT"), "a finished execution's steps stay");
    }
}

#[test]
fn stamps_always_move_forward() {
    use iofold_graph::graphql::mutations::store::next_stamp;
    let future = Timestamp::parse("2999-01-01T00:00:00Z").unwrap();
    assert_eq!(next_stamp(Some(&future.to_text())).to_text(), "2999-01-01T00:00:00.000001Z");
    assert!(next_stamp(Some("2001-01-01T00:00:00.000000Z")) > Timestamp::parse("2020-01-01T00:00:00Z").unwrap());
}

/// A small deterministic random number generator (xorshift64*), so the test needs no crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// How long the concurrent clients run: `CONCURRENCY_SECONDS`, default 10.
fn concurrency_seconds() -> u64 {
    std::env::var("CONCURRENCY_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10)
}

both_backends! {
    async fn concurrent_clients_lose_no_update(backend: Backend) {
        const CLIENTS: u64 = 32;
        let app = std::sync::Arc::new(TestApp::new(backend).await);
        let fx = Fixtures::new(&app.state.db);
        let (ws, owner) = fx.workspace_with_owner().await;
        let token = fx.token_for(&owner).await;
        let agent = fx.insert("agents", &ws, &[]).await;
        let mut evals = Vec::new();
        for version in 1..=3i64 {
            evals.push(fx.insert("evals", &ws, &[("agent_id", (&agent).into()), ("version", version.into())]).await);
        }
        let mut traces = Vec::new();
        for _ in 0..6 {
            traces.push(fx.insert("traces", &ws, &[]).await);
        }
        let rate = "mutation($t: ID!, $r: FeedbackRating!) { rateTrace(traceId: $t, rating: $r) { feedback { id } } }";
        let record = "mutation($e: ID!, $t: ID!, $p: Boolean) { recordEvalExecutions(evalId: $e, executions: [{traceId: $t, predictedResult: $p}]) { eval { id } } }";
        let activate = "mutation($id: ID!) { activateEval(id: $id) { eval { id } } }";
        let update_eval = "mutation($id: ID!, $d: String!) { updateEval(id: $id, patch: {description: $d}) { eval { id } } }";
        let update_trace = "mutation($id: ID!, $m: JSON!) { updateTrace(id: $id, patch: {metadata: $m}) { trace { id } } }";

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(concurrency_seconds());
        let mut clients = Vec::new();
        for client in 0..CLIENTS {
            let (app, token, evals, traces) = (app.clone(), token.clone(), evals.clone(), traces.clone());
            clients.push(tokio::spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (client + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
                // (kind, acknowledged, errors)
                let mut done = [0u64; 5];
                let mut errors = Vec::new();
                let mut recorded = 0u64;
                let mut rated = std::collections::HashSet::new();
                while std::time::Instant::now() < deadline {
                    let kind = rng.below(5);
                    let trace = &traces[rng.below(traces.len())];
                    let eval = &evals[rng.below(evals.len())];
                    let response = match kind {
                        0 => {
                            let rating = ["POSITIVE", "NEGATIVE", "NEUTRAL"][rng.below(3)];
                            app.graphql(Some(&token), rate, json!({"t": trace, "r": rating})).await
                        }
                        1 => {
                            let predicted = [json!(true), json!(false), Json::Null][rng.below(3)].clone();
                            app.graphql(Some(&token), record, json!({"e": eval, "t": trace, "p": predicted})).await
                        }
                        2 => app.graphql(Some(&token), activate, json!({"id": eval})).await,
                        3 => app.graphql(Some(&token), update_eval, json!({"id": eval, "d": format!("client {client}")})).await,
                        _ => app.graphql(Some(&token), update_trace, json!({"id": trace, "m": {"client": client}})).await,
                    };
                    if response.body.get("errors").is_some() || !response.status.is_success() {
                        errors.push(format!("client {client} op {kind}: {} {}", response.status, response.body));
                        continue;
                    }
                    done[kind] += 1;
                    match kind {
                        0 => {
                            rated.insert(trace.clone());
                        }
                        1 => recorded += 1,
                        _ => {}
                    }
                }
                (done, errors, recorded, rated)
            }));
        }
        let (mut done, mut errors, mut recorded, mut rated) = ([0u64; 5], Vec::new(), 0u64, std::collections::HashSet::new());
        for client in clients {
            let (d, e, r, t) = client.await.unwrap();
            for (total, n) in done.iter_mut().zip(d) {
                *total += n;
            }
            errors.extend(e);
            recorded += r;
            rated.extend(t);
        }
        eprintln!("{backend:?}: {} clients for {} s: rate {} record {} activate {} updateEval {} updateTrace {}; errors {}",
            CLIENTS, concurrency_seconds(), done[0], done[1], done[2], done[3], done[4], errors.len());
        assert!(errors.is_empty(), "{} failed operations, the first: {}", errors.len(), errors.iter().take(5).cloned().collect::<Vec<_>>().join("\n"));
        assert!(done.iter().all(|&n| n > 0), "every kind of operation ran: {done:?}");

        // Nothing acknowledged is lost, and the stored counters equal the rows that exist.
        let db = &app.state.db;
        assert_eq!(count(db, "eval_executions", None).await, recorded as i64, "every acknowledged execution exists");
        assert_eq!(count(db, "feedback", None).await, rated.len() as i64, "one feedback row per rated trace");
        for eval in &evals {
            let (stored, real) = counters(&app, &token, eval).await;
            assert_eq!(stored, real, "eval {eval}: stored counters (executions, contradictions) equal the rows");
        }
        // One active eval per agent, and the agent points at it.
        let in_agent = format!("agent_id = {} AND status = 'active'", quote(&agent));
        assert_eq!(count(db, "evals", Some(&in_agent)).await, 1, "one active eval per agent");
        let pointed = format!("id = {} AND active_eval_id IN (SELECT id FROM evals WHERE {in_agent})", quote(&agent));
        assert_eq!(count(db, "agents", Some(&pointed)).await, 1, "the agent points at its active eval");
    }
}
