//! The server through its router: GraphQL, authentication, tenancy, health, the seed, and
//! the schema file.

use std::time::Duration;

use diesel::sql_types::Text;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use iofold_graph::catalog;
use iofold_graph::db::sql_types::Timestamp;
use iofold_graph::db::{count_rows, Backend, DatabaseUrl, Db, DbError, PoolOptions};
use iofold_graph::seed;
use iofold_graph::server::AppState;
use serde_json::json;

use crate::both_backends;
use crate::support::app::{test_config, TestApp};

const ME_AND_WORKSPACES: &str =
    "{ me { id email name createdAt updatedAt } workspaces { nodes { id name userId createdAt } } }";

both_backends! {
    async fn graphql_answers_for_the_demo_user(backend: Backend) {
        let (app, token) = TestApp::seeded(backend).await;
        let response = app.graphql(Some(&token), ME_AND_WORKSPACES, json!({})).await;
        assert_eq!(response.status, 200);
        let data = response.data();
        assert_eq!(data["me"]["email"], seed::DEMO_EMAIL);
        assert_eq!(data["me"]["id"], seed::ids::user());
        assert_eq!(data["workspaces"]["nodes"].as_array().unwrap().len(), 1);
        assert_eq!(data["workspaces"]["nodes"][0]["id"], seed::ids::workspace());
        assert_eq!(data["workspaces"]["nodes"][0]["userId"], seed::ids::user());
        // Timestamps are RFC 3339, UTC, microseconds.
        assert_eq!(data["me"]["createdAt"], "2026-01-15T09:00:00.000000Z");
        assert_eq!(response.headers["cache-control"], "private, no-store");
        assert_eq!(response.headers["vary"], "Authorization");

        let one = app
            .graphql(Some(&token), "query($id: ID!) { workspace(id: $id) { id name } }", json!({"id": seed::ids::workspace()}))
            .await;
        assert_eq!(one.data()["workspace"]["name"], "Demo Workspace");
    }
}

both_backends! {
    async fn a_workspace_of_another_tenant_is_indistinguishable_from_a_missing_one(backend: Backend) {
        let (app, _) = TestApp::seeded(backend).await;
        let (_, stranger) = app.user_with_token("stranger@example.com", None, false).await;
        let query = "query($id: ID!) { workspace(id: $id) { id } }";
        let theirs = app.graphql(Some(&stranger), query, json!({"id": seed::ids::workspace()})).await;
        let missing = app.graphql(Some(&stranger), query, json!({"id": "workspace_00000000-0000-7000-8000-000000000000"})).await;
        assert_eq!(theirs.body, missing.body);
        assert_eq!(theirs.data()["workspace"], json!(null));
        let mine = app.graphql(Some(&stranger), ME_AND_WORKSPACES, json!({})).await;
        assert_eq!(mine.data()["workspaces"]["nodes"], json!([]));
        assert_eq!(mine.data()["me"]["email"], "stranger@example.com");

        // The admin secret sees every workspace, and is nobody.
        let admin = app.graphql_admin(ME_AND_WORKSPACES, json!({})).await;
        assert_eq!(admin.data()["me"], json!(null));
        assert_eq!(admin.data()["workspaces"]["nodes"][0]["id"], seed::ids::workspace());
    }
}

both_backends! {
    async fn bad_credentials_are_unauthenticated(backend: Backend) {
        let (app, token) = TestApp::seeded(backend).await;
        // No token: introspection is open, data is not.
        let anonymous = app.graphql(None, "{ __typename me { id } }", json!({})).await;
        assert_eq!(anonymous.status, 200);
        assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
        assert_eq!(anonymous.body["data"]["me"], json!(null));
        let schema = app.graphql(None, "{ __schema { queryType { name } } }", json!({})).await;
        assert_eq!(schema.data()["__schema"]["queryType"]["name"], "Query");

        let past = Timestamp::from_datetime(chrono::Utc::now() - chrono::Duration::minutes(1));
        let future = Timestamp::from_datetime(chrono::Utc::now() + chrono::Duration::days(1));
        let (_, expired) = app.user_with_token("expired@example.com", Some(past), false).await;
        let (_, revoked) = app.user_with_token("revoked@example.com", None, true).await;
        let (_, valid) = app.user_with_token("valid@example.com", Some(future), false).await;
        let unknown = format!("{token}x");
        for bad in [expired.as_str(), revoked.as_str(), unknown.as_str()] {
            let response = app.graphql(Some(bad), "{ me { id } }", json!({})).await;
            assert_eq!(response.status, 401, "{bad}");
            assert_eq!(response.error_code(), Some("UNAUTHENTICATED"));
        }
        let malformed = app.post_graphql_with(json!({"query": "{ me { id } }"}), &[("authorization", "Basic abc")]).await;
        assert_eq!(malformed.status, 401);
        let wrong_secret = app
            .post_graphql_with(json!({"query": "{ me { id } }"}), &[("x-iofold-admin-secret", "not-the-secret-at-all")])
            .await;
        assert_eq!(wrong_secret.error_code(), Some("UNAUTHENTICATED"));
        let ok = app.graphql(Some(&valid), "{ me { email } }", json!({})).await;
        assert_eq!(ok.data()["me"]["email"], "valid@example.com");
    }
}

both_backends! {
    async fn token_use_is_recorded_without_a_write_per_request(backend: Backend) {
        let (app, token) = TestApp::seeded(backend).await;
        let last_used = || async {
            #[derive(QueryableByName)]
            struct Row {
                #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
                stamp: Option<String>,
            }
            let sql = format!("SELECT CAST(last_used_at AS TEXT) AS stamp FROM api_tokens WHERE id = '{}'", seed::ids::api_token());
            let row: Row = async {
                Ok::<_, DbError>(iofold_graph::with_conn!(&app.state.db, |conn| diesel::sql_query(&sql).get_result(conn).await?))
            }
            .await
            .unwrap();
            row.stamp
        };
        assert_eq!(last_used().await, None);
        app.graphql(Some(&token), "{ me { id } }", json!({})).await.data();
        let mut first = None;
        for _ in 0..50 {
            first = last_used().await;
            if first.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(first.is_some(), "the first use is recorded");
        for _ in 0..3 {
            app.graphql(Some(&token), "{ me { id } }", json!({})).await.data();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(last_used().await, first, "later uses within a minute write nothing");
    }
}

both_backends! {
    async fn health_makes_a_database_round_trip(backend: Backend) {
        let app = TestApp::new(backend).await;
        let ok = app.get("/health", &[]).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.body["status"], "ok");
        assert_eq!(ok.body["database"], "ok");
        assert_eq!(ok.body["backend"], backend.name());

        // A database that cannot be reached: 503.
        let down_url = match backend {
            Backend::Sqlite => DatabaseUrl::Sqlite("/nonexistent-dir/iofold/down.db".into()),
            Backend::Postgres => DatabaseUrl::Postgres("postgres://postgres@127.0.0.1:1/none".into()),
        };
        let down = Db::connect(&down_url, &PoolOptions { max_size: 2 }).unwrap();
        let down_app = TestApp { state: AppState::new(down, test_config(down_url.as_str())), ..app };
        let response = down_app.get("/health", &[]).await;
        assert_eq!(response.status, 503);
        assert_eq!(response.body["database"], "unavailable");
    }
}

both_backends! {
    async fn graphiql_and_get_queries(backend: Backend) {
        let app = TestApp::new(backend).await;
        let page = app.get("/graphql", &[("accept", "text/html")]).await;
        assert_eq!(page.status, 200);
        assert!(page.body.as_str().unwrap().contains("graphiql"), "GraphiQL page");
        let get = app.get("/graphql?query=%7B__typename%7D", &[("accept", "application/json")]).await;
        assert_eq!(get.data()["__typename"], "Query");
    }
}

/// Every row's id and last change, table by table.
async fn snapshot(db: &Db) -> Vec<(String, i64, Vec<(String, String)>)> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Text)]
        stamp: String,
    }
    let mut out = Vec::new();
    for table in catalog::tables() {
        let sql = format!("SELECT id, CAST(updated_at AS TEXT) AS stamp FROM {} ORDER BY id", table.name);
        let rows: Vec<Row> =
            async { Ok::<_, DbError>(iofold_graph::with_conn!(db, |conn| diesel::sql_query(&sql).load(conn).await?)) }
                .await
                .unwrap();
        let count = count_rows(db, table.name).await.unwrap();
        out.push((table.name.to_owned(), count, rows.into_iter().map(|r| (r.id, r.stamp)).collect()));
    }
    out
}

both_backends! {
    async fn seeding_twice_leaves_the_same_rows(backend: Backend) {
        let (app, _) = TestApp::seeded(backend).await;
        let db = &app.state.db;
        let first = snapshot(db).await;
        let again = seed::run(db, &app.state.config).await.unwrap();
        assert_eq!(again.new_token, None, "the second run does not make a new token");
        assert_eq!(snapshot(db).await, first);

        // What the data model's demo section asks for.
        let count = |name: &str| first.iter().find(|(t, _, _)| t == name).unwrap().1;
        for (table, n) in [
            ("users", 1), ("workspaces", 1), ("workspace_members", 1), ("integrations", 1), ("agents", 1),
            ("agent_versions", 2), ("traces", 5), ("feedback", 5), ("evals", 1), ("eval_executions", 5),
            ("jobs", 1), ("tasksets", 1), ("taskset_tasks", 3), ("workflows", 1), ("executions", 1),
            ("execution_steps", 3), ("api_tokens", 1),
        ] {
            assert_eq!(count(table), n, "{table}");
        }
        #[derive(QueryableByName, Debug, PartialEq)]
        struct Facts {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            positive: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            contradictions: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            compared: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            counters_ok: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            active_versions: i64,
        }
        let sql = "SELECT
            (SELECT COUNT(*) FROM feedback WHERE rating = 'positive') AS positive,
            (SELECT COUNT(*) FROM eval_comparison WHERE is_contradiction) AS contradictions,
            (SELECT COUNT(*) FROM eval_comparison WHERE is_contradiction IS NOT NULL) AS compared,
            (SELECT COUNT(*) FROM evals WHERE status = 'active' AND accuracy = 1.0 AND execution_count = 5 AND contradiction_count = 0) AS counters_ok,
            (SELECT COUNT(*) FROM agents a JOIN agent_versions v ON v.id = a.active_version_id WHERE v.status = 'active') AS active_versions";
        let facts: Facts = async { Ok::<_, DbError>(iofold_graph::with_conn!(db, |conn| diesel::sql_query(sql).get_result(conn).await?)) }
            .await
            .unwrap();
        assert_eq!(facts, Facts { positive: 3, contradictions: 0, compared: 5, counters_ok: 1, active_versions: 1 });
    }
}

#[tokio::test]
async fn schema_file_matches_the_running_schema() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let file = std::fs::read_to_string(path).expect("schema.graphql exists");
    let running = iofold_graph::graphql::schema_file().await;
    assert!(
        file == running,
        "schema.graphql differs from the running schema: regenerate it with `cargo run -- schema > schema.graphql`"
    );
}
