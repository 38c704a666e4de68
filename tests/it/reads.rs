//! What reads fetch: only the columns a query selects (plus the keys relations, cursors and
//! tenancy need), no rows for a connection asked only for its count, and a JSON column
//! passed to the client as stored. Seen through the statements the server runs.

use serde_json::{json, Value as Json};

use crate::both_backends;
use crate::graph::nested_data;
use crate::support::app::TestApp;
use crate::support::fixtures::{Fixtures, Value};

/// The JSON columns of `traces`, none of which a trace page of scalar columns needs.
const TRACE_JSON: [&str; 4] = ["\"steps\"", "\"raw_data\"", "\"spans\"", "\"metadata\""];

/// Runs `query` as the admin and returns its data and the shapes of the statements it ran.
async fn traced(app: &TestApp, query: &str, variables: Json) -> (Json, Vec<String>) {
    app.state.db.stats.capture_shapes();
    let response = app.graphql_admin(query, variables).await;
    // SQLite quotes identifiers with backticks, PostgreSQL with double quotes.
    let shapes = app.state.db.stats.take_shapes().into_iter().map(|s| s.replace('`', "\"")).collect();
    (response.data().clone(), shapes)
}

fn on_table<'a>(shapes: &'a [String], table: &str) -> Vec<&'a String> {
    let from = format!("FROM \"{table}\"");
    shapes.iter().filter(|s| s.contains(&from)).collect()
}

both_backends! {
    async fn a_read_fetches_only_the_columns_it_selects(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let (workspace, _) = fx.workspace_with_owner().await;
        nested_data(&fx, &workspace, 5).await;
        let steps = json!([{"step_id": "s1", "input": "question", "output": "answer", "metadata": {"n": 1.5}}]);
        let trace = fx
            .insert("traces", &workspace, &[
                ("steps", Value::Json(steps.to_string())),
                ("metadata", Value::Json(r#"{"env": "prod"}"#.into())),
                ("timestamp", Value::Text("2030-01-01T00:00:00.000000Z".into())),
            ])
            .await;

        // A page of scalar columns with nested relations: no JSON column of any table is read.
        let page = "query($ws: ID!) { traces(workspaceId: $ws, first: 10) { nodes { id traceId timestamp inputPreview \
            stepCount hasErrors feedback { rating } evalExecutions(first: 3) { nodes { predictedResult score eval { name } } } } } }";
        let (data, shapes) = traced(&app, page, json!({"ws": workspace})).await;
        assert_eq!(data["traces"]["nodes"].as_array().unwrap().len(), 6);
        assert_eq!(shapes.len(), 4, "traces, feedback, executions, evals: {shapes:#?}");
        for shape in &shapes {
            for column in TRACE_JSON {
                assert!(!shape.contains(column), "{column} is never read for this page: {shape}");
            }
            assert!(!shape.contains(".*"), "no statement reads every column: {shape}");
        }
        let traces = on_table(&shapes, "traces");
        assert_eq!(traces.len(), 1);
        assert!(traces[0].contains("\"input_preview\"") && traces[0].contains("\"step_count\""), "{}", traces[0]);
        assert!(!traces[0].contains("\"output_preview\""), "an unselected text column is not read either: {}", traces[0]);
        let evals = on_table(&shapes, "evals");
        assert!(evals.len() == 1 && !evals[0].contains("\"code\""), "the eval's code is not read: {evals:?}");

        // Selected, the JSON column is read and reaches the client as the stored value.
        let detail = "query($id: ID!) { trace(id: $id) { id steps metadata } }";
        let (data, shapes) = traced(&app, detail, json!({"id": trace})).await;
        assert_eq!(data["trace"]["steps"], steps);
        assert_eq!(data["trace"]["metadata"], json!({"env": "prod"}));
        let traces = on_table(&shapes, "traces");
        assert!(traces.len() == 1 && traces[0].contains("\"steps\"") && !traces[0].contains("\"raw_data\""), "{traces:?}");
    }
}

both_backends! {
    async fn a_connection_asked_only_for_its_count_loads_no_rows(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let (workspace, _) = fx.workspace_with_owner().await;
        nested_data(&fx, &workspace, 7).await;
        let counts = "query($ws: ID!) { agents(workspaceId: $ws) { totalCount nodes { id feedbacks { totalCount } \
            evals { totalCount } } } }";
        let (data, shapes) = traced(&app, counts, json!({"ws": workspace})).await;
        let agents = data["agents"]["nodes"].as_array().unwrap();
        assert_eq!(agents.len(), 1);
        assert_eq!(data["agents"]["totalCount"], 1);
        assert_eq!(agents[0]["feedbacks"]["totalCount"], 7);
        assert_eq!(agents[0]["evals"]["totalCount"], 10);
        for table in ["feedback", "evals"] {
            let reads = on_table(&shapes, table);
            assert_eq!(reads.len(), 1, "{table}: one count, no page: {shapes:#?}");
            assert!(reads[0].contains("COUNT(*)") && !reads[0].contains("ROW_NUMBER") && !reads[0].contains("LATERAL"));
        }
        assert_eq!(shapes.len(), 4, "the agents' page and the three counts: {shapes:#?}");

        // The same counts next to the rows agree with them.
        let both = "query($ws: ID!) { agents(workspaceId: $ws) { nodes { feedbacks(first: 100) { totalCount nodes { id } } } } }";
        let (data, _) = traced(&app, both, json!({"ws": workspace})).await;
        let feedbacks = &data["agents"]["nodes"][0]["feedbacks"];
        assert_eq!(feedbacks["nodes"].as_array().unwrap().len() as i64, feedbacks["totalCount"].as_i64().unwrap());
    }
}

both_backends! {
    async fn aliases_of_one_relation_get_the_columns_each_selects(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let (workspace, _) = fx.workspace_with_owner().await;
        nested_data(&fx, &workspace, 3).await;
        let query = "query($ws: ID!) { traces(workspaceId: $ws) { nodes { a: feedback { rating } b: feedback { id ratingDetail createdAt } \
            short: evalExecutions(first: 1) { nodes { id } } long: evalExecutions(first: 1) { edges { cursor node { id score eval { version } } } } } } }";
        let (data, _) = traced(&app, query, json!({"ws": workspace})).await;
        for trace in data["traces"]["nodes"].as_array().unwrap() {
            assert!(trace["a"]["rating"].is_string());
            assert!(trace["b"]["id"].is_string() && trace["b"]["createdAt"].is_string());
            assert_eq!(trace["short"]["nodes"][0]["id"], trace["long"]["edges"][0]["node"]["id"]);
            assert!(trace["long"]["edges"][0]["cursor"].is_string());
            assert!(trace["long"]["edges"][0]["node"]["eval"]["version"].is_i64());
        }
    }
}

both_backends! {
    /// A rating carries its trace's workspace, so a member's tenancy condition on ratings is a
    /// condition on the rating itself: counting an agent's ratings, or reading a page's, never
    /// reads the member's traces. The scope still hides another workspace's ratings, and a
    /// rating made through the API is put in its trace's workspace, which no patch changes.
    async fn a_members_scope_on_ratings_is_the_ratings_own_workspace(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let (workspace, user) = fx.workspace_with_owner().await;
        let token = fx.token_for(&user).await;
        nested_data(&fx, &workspace, 4).await;
        let (other, _) = fx.workspace_with_owner().await;
        nested_data(&fx, &other, 3).await;
        let as_member = |query: &'static str, variables: Json| {
            let (app, token) = (&app, token.clone());
            async move {
                app.state.db.stats.capture_shapes();
                let response = app.graphql(Some(&token), query, variables).await;
                let shapes: Vec<String> =
                    app.state.db.stats.take_shapes().into_iter().map(|s| s.replace('`', "\"")).collect();
                (response, shapes)
            }
        };

        let counts = "query($ws: ID!) { agents(workspaceId: $ws) { nodes { feedbacks { totalCount } } } }";
        let (response, shapes) = as_member(counts, json!({"ws": workspace})).await;
        assert_eq!(response.data()["agents"]["nodes"][0]["feedbacks"]["totalCount"], 4, "{:?}", response.body);
        let page = "query($ws: ID!) { traces(workspaceId: $ws) { nodes { id feedback { rating } } } }";
        let (response, more) = as_member(page, json!({"ws": workspace})).await;
        let nodes = response.data()["traces"]["nodes"].as_array().unwrap().clone();
        assert!(nodes.len() == 4 && nodes.iter().all(|n| n["feedback"]["rating"].is_string()), "{nodes:?}");
        let ratings: Vec<&String> = shapes.iter().chain(&more).filter(|s| s.contains("FROM \"feedback\"")).collect();
        assert_eq!(ratings.len(), 2, "{shapes:#?} {more:#?}");
        for shape in ratings {
            assert!(shape.contains("\"feedback\".\"workspace_id\""), "scoped by its own workspace: {shape}");
            assert!(!shape.contains("\"traces\""), "a member's rating scope reads no trace: {shape}");
        }

        // The other workspace's ratings stay invisible to the member, by id and in lists.
        let (response, _) = as_member("query($ws: ID!) { feedbacks(workspaceId: $ws) { totalCount } }", json!({"ws": other})).await;
        assert_eq!(response.data()["feedbacks"]["totalCount"], 0, "a workspace the member is not in lists no rating: {:?}", response.body);
        let foreign = app.graphql_admin("query($ws: ID!) { feedbacks(workspaceId: $ws, first: 1) { nodes { id } } }", json!({"ws": other})).await;
        let foreign = foreign.data()["feedbacks"]["nodes"][0]["id"].clone();
        assert!(foreign.is_string());
        let (response, _) = as_member("query($id: ID!) { feedback(id: $id) { id } }", json!({"id": foreign})).await;
        assert!(response.data()["feedback"].is_null(), "{:?}", response.body);

        // rateTrace puts the rating in its trace's workspace; a patch cannot move it.
        let trace = fx.insert("traces", &workspace, &[]).await;
        let rate = "mutation($t: ID!) { rateTrace(traceId: $t, rating: POSITIVE) { feedback { id workspaceId workspace { id } } } }";
        let (response, _) = as_member(rate, json!({"t": trace})).await;
        let rating = &response.data()["rateTrace"]["feedback"];
        assert_eq!(rating["workspaceId"], json!(workspace), "{:?}", response.body);
        assert_eq!(rating["workspace"]["id"], json!(workspace));
        let moved = "mutation($id: ID!, $ws: ID!) { updateFeedback(id: $id, patch: {workspaceId: $ws}) { feedback { id } } }";
        let (response, _) = as_member(moved, json!({"id": rating["id"], "ws": other})).await;
        assert!(response.body["errors"].is_array(), "workspaceId is no patch field: {:?}", response.body);
        let (response, _) = as_member(
            "query($ws: ID!) { workspace(id: $ws) { feedbacks { totalCount } } }",
            json!({"ws": workspace}),
        )
        .await;
        assert_eq!(response.data()["workspace"]["feedbacks"]["totalCount"], 5, "{:?}", response.body);
    }
}
