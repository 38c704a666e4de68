//! The graph through HTTP: every table and relation readable by its members and by no one
//! else, batched reads, pagination, filters and ordering, names, dashboards.

use std::collections::BTreeSet;

use iofold_graph::catalog::{self, Scope, Table};
use iofold_graph::db::Backend;
use iofold_graph::graphql::names::{self, table_names};
use serde_json::{json, Value as Json};

use crate::both_backends;
use crate::support::app::TestApp;
use crate::support::fixtures::{self, Fixtures, Value};
use crate::support::world::world;

fn one_query(table: &Table) -> String {
    format!("query($id: ID!) {{ {}(id: $id) {{ id }} }}", table_names(table).one)
}

/// Whether a member of the workspace that holds the row may see it.
fn visible_to_members(table: &Table) -> bool {
    !matches!(table.scope, Scope::User(_) | Scope::AdminOnly)
}

both_backends! {
    async fn every_row_is_readable_by_its_members_only(backend: Backend) {
        let w = world(backend).await;
        for table in catalog::tables() {
            let id = &w.a[table.name];
            let names = table_names(table);
            let query = one_query(table);
            let as_a = w.app.graphql(Some(&w.token_a), &query, json!({"id": id})).await;
            let as_b = w.app.graphql(Some(&w.token_b), &query, json!({"id": id})).await;
            let as_admin = w.app.graphql_admin(&query, json!({"id": id})).await;
            assert_eq!(as_admin.data()[&names.one]["id"], json!(id), "{}: the admin sees every row", table.name);
            let global = matches!(table.scope, Scope::Global);
            if visible_to_members(table) {
                assert_eq!(as_a.data()[&names.one]["id"], json!(id), "{}: a member reads it by id", table.name);
            } else {
                assert_eq!(as_a.data()[&names.one], json!(null), "{}: not even a member reads it", table.name);
            }
            if !global {
                assert_eq!(as_b.data()[&names.one], json!(null), "{}: another tenant gets null", table.name);
                let missing = w.app.graphql(Some(&w.token_b), &query, json!({"id": format!("{}_00000000-0000-7000-8000-000000000000", table.id_prefix)})).await;
                assert_eq!(as_b.body, missing.body, "{}: indistinguishable from a missing row", table.name);
            }
            // node(id) finds it the same way.
            let node = w.app.graphql(Some(&w.token_a), "query($id: ID!) { node(id: $id) { __typename id } }", json!({"id": id})).await;
            if visible_to_members(table) {
                assert_eq!(node.data()["node"]["__typename"], table.type_name);
            } else {
                assert_eq!(node.data()["node"], json!(null));
            }
            if !global {
                let node_b = w.app.graphql(Some(&w.token_b), "query($id: ID!) { node(id: $id) { id } }", json!({"id": id})).await;
                assert_eq!(node_b.data()["node"], json!(null), "{}: node() hides it too", table.name);
            }
            // Lists.
            if iofold_graph::graphql::access::has_workspace_lists(table) {
                let ws_a = &w.a["workspaces"];
                let list = format!("query($ws: ID!) {{ {}(workspaceId: $ws, first: 100) {{ totalCount nodes {{ id }} }} }}", names.list);
                let mine = w.app.graphql(Some(&w.token_a), &list, json!({"ws": ws_a})).await;
                let ids: Vec<&Json> = mine.data()[&names.list]["nodes"].as_array().unwrap().iter().map(|n| &n["id"]).collect();
                assert!(ids.contains(&&json!(id)), "{}: listed for its members", table.name);
                let theirs = w.app.graphql(Some(&w.token_b), &list, json!({"ws": ws_a})).await;
                assert_eq!(theirs.data()[&names.list], json!({"totalCount": 0, "nodes": []}), "{}: nothing for another tenant", table.name);
            }
        }
    }
}

both_backends! {
    async fn every_relation_is_navigable_both_ways_within_the_workspace(backend: Backend) {
        let w = world(backend).await;
        let ws_a = w.a["workspaces"].clone();
        for relation in names::relations() {
            let child = relation.child;
            let parent = relation.parent;
            if !visible_to_members(child) || !visible_to_members(parent) {
                continue;
            }
            let fk_field = names::column_field(relation.column);
            // The child with its key and its parent.
            let (child_id, path) = if child.view {
                (w.a["eval_executions"].clone(), "evalComparisons")
            } else {
                (w.a[child.name].clone(), "")
            };
            let child_query = if child.view {
                format!("query($ws: ID!, $id: ID!) {{ evalComparisons(workspaceId: $ws, filter: {{id: {{eq: $id}}}}) {{ nodes {{ id {fk_field} {} {{ id }} }} }} }}", relation.parent_field)
            } else {
                format!("query($id: ID!) {{ {}(id: $id) {{ id {fk_field} {} {{ id }} }} }}", table_names(child).one, relation.parent_field)
            };
            let response = w.app.graphql(Some(&w.token_a), &child_query, json!({"ws": ws_a, "id": child_id})).await;
            let row = if child.view { response.data()[path]["nodes"][0].clone() } else { response.data()[&table_names(child).one].clone() };
            assert_eq!(row["id"], json!(child_id), "{}.{}", child.name, relation.column.name);
            let Some(parent_id) = row[&fk_field].as_str().map(str::to_owned) else {
                continue; // a self-reference left NULL by the fixtures
            };
            assert_eq!(row[&relation.parent_field]["id"], json!(parent_id), "{}.{} → {}", child.name, relation.parent_field, parent.name);
            // From the parent back to its children.
            let selection = if relation.one_to_one { "id".to_owned() } else { "totalCount nodes { id }".to_owned() };
            let parent_query = format!("query($id: ID!) {{ {}(id: $id) {{ {} {{ {selection} }} }} }}", table_names(parent).one, relation.children_field);
            let back = w.app.graphql(Some(&w.token_a), &parent_query, json!({"id": parent_id})).await;
            let children = &back.data()[&table_names(parent).one][&relation.children_field];
            if relation.one_to_one {
                assert_eq!(children["id"], json!(child_id), "{}.{}", parent.name, relation.children_field);
            } else {
                let ids: Vec<&Json> = children["nodes"].as_array().unwrap().iter().map(|n| &n["id"]).collect();
                assert!(ids.contains(&&json!(child_id)), "{}.{} lists {}", parent.name, relation.children_field, child_id);
                assert_eq!(children["totalCount"].as_i64(), Some(ids.len() as i64));
            }
            // Another tenant reaches neither end.
            if !matches!(parent.scope, Scope::Global) {
                let theirs = w.app.graphql(Some(&w.token_b), &parent_query, json!({"id": parent_id})).await;
                assert_eq!(theirs.data()[&table_names(parent).one], json!(null), "{} hidden from another tenant", parent.name);
            }
        }
    }
}

both_backends! {
    async fn links_reach_only_the_callers_rows(backend: Backend) {
        let w = world(backend).await;
        let fx = Fixtures::new(&w.app.state.db);
        // Workspace B's agent uses workspace A's tool too (tools are global).
        fx.insert("agent_tools", &w.b["workspaces"], &[("agent_id", (&w.b["agents"]).into()), ("tool_id", (&w.a["tools"]).into())]).await;
        let q = "query($id: ID!) { agent(id: $id) { tools { totalCount nodes { id } } functions { nodes { id } } agentTools { nodes { id } } } }";
        let agent = w.app.graphql(Some(&w.token_a), q, json!({"id": w.a["agents"]})).await;
        assert_eq!(agent.data()["agent"]["tools"]["nodes"], json!([{"id": w.a["tools"]}]));
        assert_eq!(agent.data()["agent"]["tools"]["totalCount"], 1);
        assert_eq!(agent.data()["agent"]["functions"]["nodes"], json!([{"id": w.a["functions"]}]));
        let q = "query($id: ID!) { tool(id: $id) { agents { totalCount nodes { id } } } }";
        let seen_by_a = w.app.graphql(Some(&w.token_a), q, json!({"id": w.a["tools"]})).await;
        assert_eq!(seen_by_a.data()["tool"]["agents"], json!({"totalCount": 1, "nodes": [{"id": w.a["agents"]}]}));
        let seen_by_b = w.app.graphql(Some(&w.token_b), q, json!({"id": w.a["tools"]})).await;
        assert_eq!(seen_by_b.data()["tool"]["agents"], json!({"totalCount": 1, "nodes": [{"id": w.b["agents"]}]}));
        let q = "query($id: ID!) { function(id: $id) { agents { nodes { id } } } }";
        let function = w.app.graphql(Some(&w.token_a), q, json!({"id": w.a["functions"]})).await;
        assert_eq!(function.data()["function"]["agents"]["nodes"], json!([{"id": w.a["agents"]}]));
    }
}

both_backends! {
    async fn no_root_list_leaks_rows_across_workspaces(backend: Backend) {
        let w = world(backend).await;
        let introspection = w.app.graphql(Some(&w.token_b), "{ __schema { queryType { fields { name args { name } type { kind ofType { name } } } } } }", json!({})).await;
        let fields = introspection.data()["__schema"]["queryType"]["fields"].as_array().unwrap().clone();
        let lists: Vec<&Json> = fields.iter().filter(|f| f["type"]["ofType"]["name"].as_str().is_some_and(|n| n.ends_with("Connection"))).collect();
        assert_eq!(lists.len(), catalog::TABLES.len(), "one root list per table and the view");
        let foreign: BTreeSet<&String> = w.a.iter().filter(|(t, _)| **t != "tools").map(|(_, id)| id).collect();
        let mut seen = 0;
        for field in lists {
            let name = field["name"].as_str().unwrap();
            let takes_workspace = field["args"].as_array().unwrap().iter().any(|a| a["name"] == "workspaceId");
            let workspaces = if takes_workspace { vec![w.a["workspaces"].clone(), w.b["workspaces"].clone()] } else { vec![String::new()] };
            for ws in workspaces {
                let query = if takes_workspace {
                    format!("query($ws: ID!) {{ {name}(workspaceId: $ws, first: 100) {{ totalCount nodes {{ id }} }} }}")
                } else {
                    format!("{{ {name}(first: 100) {{ totalCount nodes {{ id }} }} }}")
                };
                let response = w.app.graphql(Some(&w.token_b), &query, json!({"ws": ws})).await;
                let nodes = response.data()[name]["nodes"].as_array().unwrap().clone();
                for node in &nodes {
                    let id = node["id"].as_str().unwrap().to_owned();
                    assert!(!foreign.contains(&id), "{name} leaks {id} of workspace A");
                }
                assert_eq!(response.data()[name]["totalCount"].as_u64(), Some(nodes.len() as u64), "{name}: totalCount counts only visible rows");
                seen += nodes.len();
            }
        }
        assert!(seen > 40, "B sees its own rows ({seen})");
    }
}

/// Builds `n` traces with a feedback each and 10 executions each over 10 evals.
pub(crate) async fn nested_data(fx: &Fixtures, workspace: &str, n: usize) {
    let agent = fx.insert("agents", workspace, &[]).await;
    let evals = fx
        .insert_many(
            "evals",
            workspace,
            &(1..=10)
                .map(|v| vec![("agent_id", Value::from(&agent)), ("version", Value::from(v as i64))])
                .collect::<Vec<_>>(),
        )
        .await;
    let traces = fx
        .insert_many(
            "traces",
            workspace,
            &(0..n).map(|i| vec![("timestamp", Value::from(fixtures::timestamp(i as i64)))]).collect::<Vec<_>>(),
        )
        .await;
    fx.insert_many(
        "feedback",
        workspace,
        &traces
            .iter()
            .map(|t| vec![("trace_id", Value::from(t)), ("agent_id", Value::from(&agent))])
            .collect::<Vec<_>>(),
    )
    .await;
    let executions: Vec<Vec<(&str, Value)>> = traces
        .iter()
        .flat_map(|t| evals.iter().map(move |e| vec![("trace_id", Value::from(t)), ("eval_id", Value::from(e))]))
        .collect();
    fx.insert_many("eval_executions", workspace, &executions).await;
}

both_backends! {
    async fn nested_reads_cost_one_statement_per_relation_per_level(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let (workspace, owner) = fx.workspace_with_owner().await;
        nested_data(&fx, &workspace, 100).await;
        let token = fx.token_for(&owner).await;
        let query = "query($ws: ID!, $n: Int!) { traces(workspaceId: $ws, first: $n) { nodes { id feedback { rating } evalExecutions(first: 10) { nodes { id eval { name } } } } } }";
        for page in [10, 100] {
            let stats = app.state.db.stats.clone();
            let before = stats.statements();
            let response = app.graphql_admin(query, json!({"ws": workspace, "n": page})).await;
            let statements = stats.statements() - before;
            let nodes = response.data()["traces"]["nodes"].as_array().unwrap();
            assert_eq!(nodes.len(), page);
            assert!(nodes.iter().all(|t| t["evalExecutions"]["nodes"].as_array().unwrap().len() == 10 && !t["feedback"].is_null()));
            assert!(nodes[0]["evalExecutions"]["nodes"][0]["eval"]["name"].is_string());
            assert_eq!(statements, 4, "page {page}: traces, feedback, executions, evals");

            // As a user: one statement reads the token with its memberships, nothing else.
            let before = stats.statements();
            app.graphql(Some(&token), query, json!({"ws": workspace, "n": page})).await.data();
            assert_eq!(stats.statements() - before, 4 + 1, "page {page} as a member");
        }
    }
}

/// Walks a list with cursors, `size` rows at a time; returns the ids in the order seen.
async fn walk(
    app: &TestApp,
    workspace: &str,
    order: &Json,
    size: i64,
    backward: bool,
    between: &mut impl FnMut(usize) -> Vec<String>,
) -> Vec<String> {
    let (page_arg, cursor_arg, more, next) = if backward {
        ("last", "before", "hasPreviousPage", "startCursor")
    } else {
        ("first", "after", "hasNextPage", "endCursor")
    };
    let query = format!(
        "query($ws: ID!, $n: Int!, $c: String, $o: [TraceOrderBy!]) {{ traces(workspaceId: $ws, {page_arg}: $n, {cursor_arg}: $c, orderBy: $o) {{ nodes {{ id }} pageInfo {{ {more} {next} }} }} }}"
    );
    let mut cursor = Json::Null;
    let mut pages: Vec<Vec<String>> = Vec::new();
    for round in 0.. {
        let response = app.graphql_admin(&query, json!({"ws": workspace, "n": size, "c": cursor, "o": order})).await;
        let data = &response.data()["traces"];
        pages.push(data["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_owned()).collect());
        if !data["pageInfo"][more].as_bool().unwrap() {
            break;
        }
        cursor = data["pageInfo"][next].clone();
        between(round);
        assert!(round < 1_000, "the walk ends");
    }
    if backward {
        pages.reverse();
    }
    pages.concat()
}

both_backends! {
    async fn cursors_visit_every_row_once_in_order(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let workspace = fx.workspace().await;
        // 250 traces; every fifth pair shares a timestamp (ties broken by id); a third have no token count.
        let rows: Vec<Vec<(&str, Value)>> = (0..250)
            .map(|i| {
                let tokens = if i % 3 == 0 { Value::Null } else { Value::from((i * 7 % 50) as i64) };
                vec![("timestamp", Value::from(fixtures::timestamp(((i / 2) * 2) as i64))), ("total_tokens", tokens)]
            })
            .collect();
        fx.insert_many("traces", &workspace, &rows).await;
        let all_ids = |order: &str| {
            let sql = format!("SELECT id, CAST(total_tokens AS TEXT) AS tokens, CAST(timestamp AS TEXT) AS ts FROM traces ORDER BY {order}");
            let db = app.state.db.clone();
            async move {
                #[derive(diesel::QueryableByName)]
                struct Row {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    id: String,
                }
                let rows: Vec<Row> = fixtures::load(&db, &sql).await.unwrap();
                rows.into_iter().map(|r| r.id).collect::<Vec<_>>()
            }
        };
        let default_order = all_ids("timestamp DESC, id DESC").await;
        let tokens_order = all_ids("total_tokens IS NULL, total_tokens ASC, id ASC").await;
        for size in [1, 37, 100] {
            let forward = walk(&app, &workspace, &json!(null), size, false, &mut |_| vec![]).await;
            assert_eq!(forward, default_order, "forward by {size}");
            let backward = walk(&app, &workspace, &json!(null), size, true, &mut |_| vec![]).await;
            assert_eq!(backward, default_order, "backward by {size}");
        }
        let by_tokens = json!([{"field": "TOTAL_TOKENS", "direction": "ASC"}]);
        assert_eq!(walk(&app, &workspace, &by_tokens, 23, false, &mut |_| vec![]).await, tokens_order, "NULLs last ascending");
        assert_eq!(walk(&app, &workspace, &by_tokens, 23, true, &mut |_| vec![]).await, tokens_order);
        let by_tokens_desc = json!([{"field": "TOTAL_TOKENS", "direction": "DESC"}]);
        let mut desc = tokens_order.clone();
        desc.reverse();
        assert_eq!(walk(&app, &workspace, &by_tokens_desc, 23, false, &mut |_| vec![]).await, desc, "NULLs first descending");

        // Rows inserted between pages: every original row still comes exactly once, in order.
        let mut inserted = Vec::new();
        let fx2 = Fixtures::new(&app.state.db);
        let handle = tokio::runtime::Handle::current();
        let ws = workspace.clone();
        let seen = walk(&app, &workspace, &json!(null), 40, false, &mut |round| {
            let rows = vec![
                vec![("timestamp", Value::from(fixtures::timestamp(1_000 + round as i64)))],
                vec![("timestamp", Value::from(fixtures::timestamp(-1 - round as i64)))],
            ];
            let ids = tokio::task::block_in_place(|| handle.block_on(fx2.insert_many("traces", &ws, &rows)));
            inserted.extend(ids.clone());
            ids
        })
        .await;
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "no row twice");
        let originals: Vec<&String> = seen.iter().filter(|id| default_order.contains(id)).collect();
        assert_eq!(originals, default_order.iter().collect::<Vec<_>>(), "every original row, in order");
        let final_order = all_ids("timestamp DESC, id DESC").await;
        let positions: Vec<usize> = seen.iter().map(|id| final_order.iter().position(|x| x == id).unwrap()).collect();
        assert!(positions.windows(2).all(|p| p[0] < p[1]), "the walk is in order");
        assert!(seen.iter().any(|id| inserted.contains(id)), "rows inserted ahead of the cursor are reached");
    }
}

both_backends! {
    async fn bad_list_arguments_are_bad_user_input(backend: Backend) {
        let (app, token) = TestApp::seeded(backend).await;
        let ws = iofold_graph::seed::ids::workspace();
        let first_page = app.graphql(Some(&token), "query($ws: ID!) { traces(workspaceId: $ws, first: 2) { pageInfo { endCursor } } }", json!({"ws": ws})).await;
        let cursor = first_page.data()["traces"]["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
        for (args, field) in [
            (json!({"first": 101}), "first"),
            (json!({"first": -1}), "first"),
            (json!({"first": 1, "last": 1}), "last"),
            (json!({"after": "not-a-cursor"}), "after"),
            (json!({"after": cursor, "orderBy": [{"field": "CREATED_AT"}]}), "after"),
            (json!({"filter": {"timestamp": {"gt": "yesterday"}}}), "filter.timestamp.gt"),
        ] {
            let query = "query($ws: ID!, $first: Int, $last: Int, $after: String, $orderBy: [TraceOrderBy!], $filter: TraceFilter) { traces(workspaceId: $ws, first: $first, last: $last, after: $after, orderBy: $orderBy, filter: $filter) { nodes { id } } }";
            let mut variables = args.clone();
            variables["ws"] = json!(ws);
            let response = app.graphql(Some(&token), query, variables).await;
            assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{args}: {}", response.body);
            assert_eq!(response.body["errors"][0]["extensions"]["field"], field, "{args}");
        }
    }
}

both_backends! {
    async fn filters_and_orderings_agree_on_both_backends(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let workspace = fx.workspace().await;
        let rows: Vec<(&str, Vec<(&str, Value)>)> = vec![
            ("Alpha", vec![("total_tokens", 10.into()), ("has_errors", true.into()), ("source", "langfuse".into()), ("metadata", Value::Json(json!({"env": "prod", "n": 1, "tags": ["a"]}).to_string()))]),
            ("alpha", vec![("total_tokens", 20.into()), ("has_errors", false.into()), ("source", "openai".into()), ("metadata", Value::Json(json!({"env": "dev", "n": 1.0}).to_string()))]),
            ("beta_1", vec![("total_tokens", 30.into()), ("has_errors", false.into()), ("source", "langsmith".into()), ("metadata", Value::Json(json!({"env": "prod", "n": "1"}).to_string()))]),
            ("Gamma%", vec![("total_tokens", Value::Null), ("has_errors", true.into()), ("source", "playground".into()), ("metadata", Value::Json(json!({"nested": {"a": 1}, "flag": true}).to_string()))]),
            ("épée", vec![("total_tokens", 40.into()), ("has_errors", false.into()), ("source", "taskset".into()), ("metadata", Value::Null)]),
            ("Zeta", vec![("total_tokens", 50.into()), ("has_errors", false.into()), ("source", "langfuse".into()), ("metadata", Value::Json(json!([1, 2]).to_string()))]),
        ];
        for (i, (trace_id, values)) in rows.into_iter().enumerate() {
            let mut values = values;
            values.push(("trace_id", trace_id.into()));
            values.push(("timestamp", Value::from(fixtures::timestamp(i as i64 * 60))));
            fx.insert("traces", &workspace, &values).await;
        }
        let run = |filter: Json, order: Json| {
            let app = &app;
            let workspace = workspace.clone();
            async move {
                let query = "query($ws: ID!, $f: TraceFilter, $o: [TraceOrderBy!]) { traces(workspaceId: $ws, filter: $f, orderBy: $o) { totalCount nodes { traceId } } }";
                let response = app.graphql_admin(query, json!({"ws": workspace, "f": filter, "o": order})).await;
                let data = &response.data()["traces"];
                let ids: Vec<String> = data["nodes"].as_array().unwrap().iter().map(|n| n["traceId"].as_str().unwrap().to_owned()).collect();
                assert_eq!(data["totalCount"].as_u64(), Some(ids.len() as u64));
                ids
            }
        };
        let by_trace_id = json!([{"field": "TRACE_ID"}]);
        let cases: Vec<(Json, Vec<&str>)> = vec![
            (json!({}), vec!["Alpha", "Gamma%", "Zeta", "alpha", "beta_1", "épée"]),
            (json!({"traceId": {"eq": "alpha"}}), vec!["alpha"]),
            (json!({"traceId": {"ne": "alpha"}}), vec!["Alpha", "Gamma%", "Zeta", "beta_1", "épée"]),
            (json!({"traceId": {"in": ["Alpha", "Zeta", "nope"]}}), vec!["Alpha", "Zeta"]),
            (json!({"traceId": {"notIn": ["Alpha", "Zeta"]}}), vec!["Gamma%", "alpha", "beta_1", "épée"]),
            (json!({"traceId": {"lt": "a"}}), vec!["Alpha", "Gamma%", "Zeta"]),
            (json!({"traceId": {"gte": "beta_1"}}), vec!["beta_1", "épée"]),
            (json!({"traceId": {"like": "alp%"}}), vec!["alpha"]),
            (json!({"traceId": {"like": "%a"}}), vec!["Alpha", "Zeta", "alpha"]),
            (json!({"traceId": {"ilike": "ALP%"}}), vec!["Alpha", "alpha"]),
            (json!({"traceId": {"ilike": "ÉPÉE"}}), vec![]),
            (json!({"traceId": {"like": "beta\\__"}}), vec!["beta_1"]),
            (json!({"traceId": {"like": "Gamma\\%"}}), vec!["Gamma%"]),
            (json!({"traceId": {"like": "_eta"}}), vec!["Zeta"]),
            (json!({"totalTokens": {"gt": 20, "lte": 40}}), vec!["beta_1", "épée"]),
            (json!({"totalTokens": {"isNull": true}}), vec!["Gamma%"]),
            (json!({"totalTokens": {"ne": 10}}), vec!["Zeta", "alpha", "beta_1", "épée"]),
            (json!({"hasErrors": {"eq": true}}), vec!["Alpha", "Gamma%"]),
            (json!({"source": {"in": ["LANGFUSE", "OPENAI"]}}), vec!["Alpha", "Zeta", "alpha"]),
            (json!({"source": {"ne": "LANGFUSE"}}), vec!["Gamma%", "alpha", "beta_1", "épée"]),
            (json!({"timestamp": {"gte": fixtures::timestamp(120), "lt": fixtures::timestamp(300)}}), vec!["Gamma%", "beta_1", "épée"]),
            (json!({"timestamp": {"eq": "2026-01-01T01:00:00+01:00"}}), vec!["Alpha"]),
            (json!({"metadata": {"isNull": true}}), vec!["épée"]),
            (json!({"metadata": {"contains": {"env": "prod"}}}), vec!["Alpha", "beta_1"]),
            (json!({"metadata": {"contains": {"n": 1}}}), vec!["Alpha", "alpha"]),
            (json!({"metadata": {"contains": {"n": "1"}}}), vec!["beta_1"]),
            (json!({"metadata": {"contains": {"env": "prod", "n": 1}}}), vec!["Alpha"]),
            (json!({"metadata": {"contains": {"tags": ["a"]}}}), vec!["Alpha"]),
            (json!({"metadata": {"contains": {"nested": {"a": 1}}}}), vec!["Gamma%"]),
            (json!({"metadata": {"contains": {"flag": true}}}), vec!["Gamma%"]),
            (json!({"metadata": {"hasKey": "nested"}}), vec!["Gamma%"]),
            (json!({"metadata": {"hasKey": "env"}}), vec!["Alpha", "alpha", "beta_1"]),
            (json!({"or": [{"traceId": {"eq": "Zeta"}}, {"totalTokens": {"lt": 15}}]}), vec!["Alpha", "Zeta"]),
            (json!({"and": [{"hasErrors": {"eq": false}}, {"totalTokens": {"gte": 30}}]}), vec!["Zeta", "beta_1", "épée"]),
            (json!({"not": {"hasErrors": {"eq": false}}}), vec!["Alpha", "Gamma%"]),
            (json!({"not": {"or": [{"source": {"eq": "LANGFUSE"}}, {"totalTokens": {"isNull": true}}]}}), vec!["alpha", "beta_1", "épée"]),
        ];
        for (filter, expected) in cases {
            assert_eq!(run(filter.clone(), by_trace_id.clone()).await, expected, "{filter}");
        }
        // Orderings: NULLs last ascending and first descending, text by code point, ties by id.
        assert_eq!(run(json!({}), json!([{"field": "TOTAL_TOKENS"}])).await, ["Alpha", "alpha", "beta_1", "épée", "Zeta", "Gamma%"]);
        assert_eq!(run(json!({}), json!([{"field": "TOTAL_TOKENS", "direction": "DESC"}])).await, ["Gamma%", "Zeta", "épée", "beta_1", "alpha", "Alpha"]);
        assert_eq!(run(json!({}), json!([{"field": "HAS_ERRORS", "direction": "DESC"}, {"field": "TRACE_ID", "direction": "DESC"}])).await, ["Gamma%", "Alpha", "épée", "beta_1", "alpha", "Zeta"]);
        assert_eq!(run(json!({}), json!(null)).await, ["Zeta", "épée", "Gamma%", "beta_1", "alpha", "Alpha"], "default: newest first");

        // Aggregates over the filtered rows, at the root and under a parent.
        let aggregate = "query($ws: ID!, $f: TraceFilter) { traces(workspaceId: $ws, filter: $f, first: 1) { aggregate { count sum { totalTokens } avg { totalTokens } min { totalTokens } max { totalTokens } } } workspace(id: $ws) { traces(filter: $f) { aggregate { count sum { totalTokens } max { stepCount } } } } }";
        let all = app.graphql_admin(aggregate, json!({"ws": workspace})).await;
        assert_eq!(
            all.data()["traces"]["aggregate"],
            json!({"count": 6, "sum": {"totalTokens": 150.0}, "avg": {"totalTokens": 30.0}, "min": {"totalTokens": 10.0}, "max": {"totalTokens": 50.0}})
        );
        let clean = app.graphql_admin(aggregate, json!({"ws": workspace, "f": {"hasErrors": {"eq": false}}})).await;
        assert_eq!(
            clean.data()["traces"]["aggregate"],
            json!({"count": 4, "sum": {"totalTokens": 140.0}, "avg": {"totalTokens": 35.0}, "min": {"totalTokens": 20.0}, "max": {"totalTokens": 50.0}})
        );
        assert_eq!(clean.data()["workspace"]["traces"]["aggregate"]["count"], 4);
        assert_eq!(clean.data()["workspace"]["traces"]["aggregate"]["sum"]["totalTokens"], 140.0);
    }
}

/// The names clients rely on: type, one-row and list root fields of every table.
const NAMES: &[(&str, &str, &str, &str)] = &[
    ("users", "User", "user", "users"),
    ("workspaces", "Workspace", "workspace", "workspaces"),
    ("workspace_members", "WorkspaceMember", "workspaceMember", "workspaceMembers"),
    ("api_tokens", "ApiToken", "apiToken", "apiTokens"),
    ("integrations", "Integration", "integration", "integrations"),
    ("traces", "Trace", "trace", "traces"),
    ("trace_summaries", "TraceSummary", "traceSummary", "traceSummaries"),
    ("system_prompts", "SystemPrompt", "systemPrompt", "systemPrompts"),
    ("feedback", "Feedback", "feedback", "feedbacks"),
    ("task_metadata", "TaskMetadata", "taskMetadata", "taskMetadatas"),
    ("task_similar_traces", "TaskSimilarTrace", "taskSimilarTrace", "taskSimilarTraces"),
    ("task_feedback_pairs", "TaskFeedbackPair", "taskFeedbackPair", "taskFeedbackPairs"),
    ("agents", "Agent", "agent", "agents"),
    ("agent_versions", "AgentVersion", "agentVersion", "agentVersions"),
    ("functions", "Function", "function", "functions"),
    ("agent_functions", "AgentFunction", "agentFunction", "agentFunctions"),
    ("tools", "Tool", "tool", "tools"),
    ("agent_tools", "AgentTool", "agentTool", "agentTools"),
    ("evals", "Eval", "eval", "evals"),
    ("eval_executions", "EvalExecution", "evalExecution", "evalExecutions"),
    ("eval_cv_results", "EvalCvResult", "evalCvResult", "evalCvResults"),
    ("eval_llm_cache", "EvalLlmCacheEntry", "evalLlmCacheEntry", "evalLlmCacheEntries"),
    ("eval_comparison", "EvalComparison", "", "evalComparisons"),
    ("jobs", "Job", "job", "jobs"),
    ("job_retry_history", "JobRetry", "jobRetry", "jobRetries"),
    ("performance_snapshots", "PerformanceSnapshot", "performanceSnapshot", "performanceSnapshots"),
    ("performance_alerts", "PerformanceAlert", "performanceAlert", "performanceAlerts"),
    ("refinement_history", "Refinement", "refinement", "refinements"),
    ("auto_refine_cooldowns", "AutoRefineCooldown", "autoRefineCooldown", "autoRefineCooldowns"),
    ("tasksets", "Taskset", "taskset", "tasksets"),
    ("taskset_tasks", "TasksetTask", "tasksetTask", "tasksetTasks"),
    ("taskset_runs", "TasksetRun", "tasksetRun", "tasksetRuns"),
    ("taskset_run_results", "TasksetRunResult", "tasksetRunResult", "tasksetRunResults"),
    ("gepa_runs", "GepaRun", "gepaRun", "gepaRuns"),
    ("gepa_run_tasks", "GepaRunTask", "gepaRunTask", "gepaRunTasks"),
    ("rollout_batches", "RolloutBatch", "rolloutBatch", "rolloutBatches"),
    ("rollout_results", "RolloutResult", "rolloutResult", "rolloutResults"),
    ("playground_sessions", "PlaygroundSession", "playgroundSession", "playgroundSessions"),
    ("playground_steps", "PlaygroundStep", "playgroundStep", "playgroundSteps"),
    ("workflows", "Workflow", "workflow", "workflows"),
    ("executions", "Execution", "execution", "executions"),
    ("execution_steps", "ExecutionStep", "executionStep", "executionSteps"),
];

/// Relation fields the API names explicitly: (type, field, the type it leads to).
const RELATION_FIELDS: &[(&str, &str, &str)] = &[
    ("Trace", "workspace", "Workspace"),
    ("Workspace", "traces", "TraceConnection"),
    ("EvalExecution", "eval", "Eval"),
    ("Eval", "evalExecutions", "EvalExecutionConnection"),
    ("Trace", "agentVersion", "AgentVersion"),
    ("AgentVersion", "traces", "TraceConnection"),
    ("Agent", "activeVersion", "AgentVersion"),
    ("AgentVersion", "agentsByActiveVersion", "AgentConnection"),
    ("Eval", "parentEval", "Eval"),
    ("Eval", "evalsByParentEval", "EvalConnection"),
    ("PerformanceAlert", "acknowledgedByUser", "User"),
    ("PerformanceAlert", "resolvedByUser", "User"),
    ("User", "performanceAlertsByResolvedByUser", "PerformanceAlertConnection"),
    ("TasksetTask", "sourceTrace", "Trace"),
    ("Trace", "tasksetTasksBySourceTrace", "TasksetTaskConnection"),
    ("Trace", "feedback", "Feedback"),
    ("Trace", "traceSummary", "TraceSummary"),
    ("Trace", "taskMetadata", "TaskMetadata"),
    ("Eval", "autoRefineCooldown", "AutoRefineCooldown"),
    ("Agent", "tools", "ToolConnection"),
    ("Tool", "agents", "AgentConnection"),
    ("Agent", "functions", "FunctionConnection"),
    ("Function", "agents", "AgentConnection"),
    ("Agent", "agentTools", "AgentToolConnection"),
    ("Agent", "agentFunctions", "AgentFunctionConnection"),
    ("Eval", "evalComparisons", "EvalComparisonConnection"),
    ("Workspace", "evalAccuracyBuckets", "AccuracyBucket"),
    ("Workspace", "integrationHealth", "IntegrationHealth"),
    ("Workspace", "jobStats", "JobStat"),
    ("Agent", "feedbackCounts", "FeedbackCounts"),
];

fn named_type(ty: &Json) -> String {
    let mut ty = ty;
    while ty["name"].is_null() {
        ty = &ty["ofType"];
    }
    ty["name"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_names_are_the_api_contract() {
    let app = TestApp::new(Backend::Sqlite).await;
    let response = app
        .graphql(None, "{ __schema { types { name kind interfaces { name } fields { name type { name kind ofType { name kind ofType { name kind ofType { name } } } } } } } }", json!({}))
        .await;
    let types = response.data()["__schema"]["types"].as_array().unwrap().clone();
    let type_named = |name: &str| types.iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("no type {name}"));
    let field_type = |ty: &str, field: &str| {
        let fields = type_named(ty)["fields"].as_array().unwrap();
        let f = fields.iter().find(|f| f["name"] == field).unwrap_or_else(|| panic!("no field {ty}.{field}"));
        named_type(&f["type"])
    };
    assert_eq!(NAMES.len(), 42);
    assert_eq!(catalog::TABLES.len(), 42);
    for (table, type_name, one, list) in NAMES {
        let t = catalog::table(table).unwrap_or_else(|| panic!("catalog lacks {table}"));
        assert_eq!(t.type_name, *type_name);
        let object = type_named(type_name);
        assert_eq!(object["kind"], "OBJECT");
        let is_node = object["interfaces"].as_array().unwrap().iter().any(|i| i["name"] == "Node");
        assert_eq!(is_node, !t.view, "{type_name} implements Node");
        if !one.is_empty() {
            assert_eq!(field_type("Query", one), *type_name);
        }
        assert_eq!(field_type("Query", list), format!("{type_name}Connection"));
        for suffix in ["Connection", "Edge", "Filter", "OrderBy", "OrderField"] {
            type_named(&format!("{type_name}{suffix}"));
        }
        // Every column but secrets is a camelCase field; foreign keys are IDs.
        for column in t.columns {
            let field = names::column_field(column);
            if names::is_secret(column) {
                assert!(
                    type_named(type_name)["fields"].as_array().unwrap().iter().all(|f| f["name"] != field.as_str()),
                    "{type_name}.{field} is secret"
                );
            } else {
                let ty = field_type(type_name, &field);
                if column.references.is_some() {
                    assert_eq!(ty, "ID", "{type_name}.{field}");
                }
            }
        }
    }
    assert_eq!(field_type("Trace", "inputPreview"), "String");
    assert_eq!(field_type("Trace", "source"), "TraceSource");
    assert_eq!(field_type("Job", "status"), "JobStatus");
    assert_eq!(field_type("ExecutionStep", "status"), "ExecutionStepStatus");
    assert_eq!(field_type("Trace", "timestamp"), "DateTime");
    assert_eq!(field_type("Trace", "steps"), "JSON");
    assert_eq!(field_type("Query", "me"), "User");
    assert_eq!(field_type("Query", "node"), "Node");
    for (ty, field, target) in RELATION_FIELDS {
        assert_eq!(field_type(ty, field), *target, "{ty}.{field}");
    }
    let values: Vec<&str> = type_named("AgentVersionSource")["name"].as_str().into_iter().collect();
    assert!(!values.is_empty());
    // Every foreign key is a parent field on the child and a children field on the parent.
    for relation in names::relations() {
        assert_eq!(field_type(relation.child.type_name, &relation.parent_field), relation.parent.type_name);
        let children = field_type(relation.parent.type_name, &relation.children_field);
        assert!(children == relation.child.type_name || children == format!("{}Connection", relation.child.type_name));
    }
}

both_backends! {
    async fn dashboards_summarise_the_demo_workspace(backend: Backend) {
        let (app, token) = TestApp::seeded(backend).await;
        let query = "query($ws: ID!) { workspace(id: $ws) { evalAccuracyBuckets { bucket count } integrationHealth { platform status count } jobStats { type status count avgDurationSeconds } agents { nodes { feedbackCounts { positive negative neutral total } evals { nodes { evalComparisons(filter: {isContradiction: {eq: true}}) { totalCount } all: evalComparisons { totalCount nodes { humanRating isContradiction } } } } } } } }";
        let response = app.graphql(Some(&token), query, json!({"ws": iofold_graph::seed::ids::workspace()})).await;
        let workspace = &response.data()["workspace"];
        assert_eq!(workspace["evalAccuracyBuckets"], json!([{"bucket": "HIGH", "count": 1}, {"bucket": "MEDIUM", "count": 0}, {"bucket": "LOW", "count": 0}]));
        assert_eq!(workspace["integrationHealth"], json!([{"platform": "LANGFUSE", "status": "ACTIVE", "count": 1}]));
        assert_eq!(workspace["jobStats"], json!([{"type": "IMPORT", "status": "COMPLETED", "count": 1, "avgDurationSeconds": 120.0}]));
        let agent = &workspace["agents"]["nodes"][0];
        assert_eq!(agent["feedbackCounts"], json!({"positive": 3, "negative": 2, "neutral": 0, "total": 5}));
        let eval = &agent["evals"]["nodes"][0];
        assert_eq!(eval["evalComparisons"]["totalCount"], 0);
        assert_eq!(eval["all"]["totalCount"], 5);
        assert!(eval["all"]["nodes"].as_array().unwrap().iter().all(|n| n["isContradiction"] == json!(false)));
    }
}

both_backends! {
    async fn one_evals_contradictions_never_scan_every_rating(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let workspace = fx.workspace().await;
        nested_data(&fx, &workspace, 2_000).await;
        let db = &app.state.db;
        // A new eval that has judged 5 of the 2,000 rated traces.
        let agent = fx.insert("agents", &workspace, &[]).await;
        let focus = fx.insert("evals", &workspace, &[("agent_id", Value::from(&agent)), ("version", Value::from(1i64))]).await;
        #[derive(diesel::QueryableByName)]
        struct TraceId {
            #[diesel(sql_type = diesel::sql_types::Text)]
            id: String,
        }
        let some: Vec<TraceId> = fixtures::load(db, "SELECT id FROM traces ORDER BY id LIMIT 5").await.unwrap();
        for trace in &some {
            fx.insert("eval_executions", &workspace, &[("eval_id", Value::from(&focus)), ("trace_id", Value::from(&trace.id))]).await;
        }
        fixtures::execute(db, "ANALYZE").await.unwrap();
        let query = format!(
            "SELECT * FROM eval_comparison WHERE eval_id IN ('{}') AND is_contradiction = {}",
            focus,
            if backend == Backend::Sqlite { "1" } else { "true" }
        );
        let plan: Vec<String> = match backend {
            Backend::Sqlite => sqlite_plan(db, &query).await,
            Backend::Postgres => {
                #[derive(diesel::QueryableByName)]
                struct Line {
                    #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
                    line: String,
                }
                let lines: Vec<Line> = fixtures::load(db, &format!("EXPLAIN {query}")).await.unwrap();
                lines.into_iter().map(|l| l.line).collect()
            }
        };
        let text = plan.join("\n");
        assert!(!text.is_empty());
        match backend {
            Backend::Sqlite => {
                assert!(text.contains("USING INDEX idx_eval_executions_eval") || text.contains("USING COVERING INDEX idx_eval_executions_eval"), "{text}");
                assert!(!text.contains("SCAN f"), "feedback is looked up, not scanned: {text}");
            }
            Backend::Postgres => {
                assert!(!text.contains("Seq Scan on feedback"), "feedback is looked up, not scanned: {text}");
                assert!(text.contains("eval_executions"), "{text}");
            }
        }
    }
}

/// SQLite's query plan through the raw connection (EXPLAIN QUERY PLAN rows: id, parent, notused, detail).
async fn sqlite_plan(db: &iofold_graph::db::Db, query: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        detail: String,
    }
    let rows: Vec<Row> = fixtures::load(db, &format!("EXPLAIN QUERY PLAN {query}")).await.unwrap();
    rows.into_iter().map(|r| r.detail).collect()
}
