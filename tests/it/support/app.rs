//! [`TestApp`]: the application's router on a fresh database, driven through HTTP requests
//! without a socket (`tower::ServiceExt::oneshot`), the way a client would.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use diesel_async::RunQueryDsl;
use http_body_util::BodyExt;
use iofold_graph::config::{Config, ConfigArgs, LogFormat};
use iofold_graph::crypto::{new_token, token_hash};
use iofold_graph::db::sql_types::Timestamp;
use iofold_graph::db::{Backend, DbError};
use iofold_graph::models::{api_token, user};
use iofold_graph::schema::{api_tokens, users};
use iofold_graph::server::{router, AppState};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::db::TestDb;

/// The admin secret the test configuration sets.
pub const ADMIN_SECRET: &str = "test-admin-secret-0123456789";

/// The configuration a test server runs with.
pub fn test_config(url: &str) -> Config {
    Config::from_args(&ConfigArgs {
        database_url: url.to_owned(),
        db_pool_size: 8,
        host: "127.0.0.1".parse().unwrap(),
        port: 0,
        admin_secret: Some(ADMIN_SECRET.into()),
        encryption_key: None,
        app_env: None,
        log_format: LogFormat::Human,
    })
    .expect("test configuration is valid")
}

/// The application on a fresh, migrated database.
pub struct TestApp {
    /// The database, dropped (and removed) with the app.
    #[allow(dead_code)]
    pub test_db: TestDb,
    /// The application state the router serves.
    pub state: AppState,
}

/// A response: status, headers and body (JSON when it parses, else a string value).
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestApp {
    /// A fresh application on `backend`, migrated, without data.
    pub async fn new(backend: Backend) -> TestApp {
        let test_db = TestDb::migrated(backend).await;
        let state = AppState::new(test_db.db.clone(), test_config(test_db.url.as_str()));
        TestApp { test_db, state }
    }

    /// A fresh application with the demo data; returns the demo token too.
    pub async fn seeded(backend: Backend) -> (TestApp, String) {
        let app = Self::new(backend).await;
        let outcome = iofold_graph::seed::run(&app.state.db, &app.state.config).await.expect("seed");
        let token = outcome.new_token.expect("the first seed creates the demo token");
        (app, token)
    }

    /// Sends a request through the router.
    pub async fn request(&self, request: Request<Body>) -> TestResponse {
        let response = router(self.state.clone()).oneshot(request).await.expect("the router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        TestResponse { status, headers, body }
    }

    /// `GET path` with headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        let mut builder = Request::get(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.request(builder.body(Body::empty()).unwrap()).await
    }

    /// `POST /graphql` with a JSON body and extra headers.
    pub async fn post_graphql_with(&self, body: Value, headers: &[(&str, &str)]) -> TestResponse {
        let mut builder = Request::post("/graphql").header("content-type", "application/json");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.request(builder.body(Body::from(body.to_string())).unwrap()).await
    }

    /// A GraphQL operation as the holder of `token` (none: anonymous).
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> TestResponse {
        let authorization = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = authorization.iter().map(|a| ("authorization", a.as_str())).collect();
        self.post_graphql_with(json!({"query": query, "variables": variables}), &headers).await
    }

    /// A GraphQL operation under the admin secret.
    pub async fn graphql_admin(&self, query: &str, variables: Value) -> TestResponse {
        self.post_graphql_with(
            json!({"query": query, "variables": variables}),
            &[("x-iofold-admin-secret", ADMIN_SECRET)],
        )
        .await
    }

    /// Creates a user with a token (optionally expired or revoked); returns (user id, token).
    pub async fn user_with_token(&self, email: &str, expires_at: Option<Timestamp>, revoked: bool) -> (String, String) {
        let now = Timestamp::now();
        let user_row =
            user::NewRow { id: user::new_id(), email: email.into(), name: None, created_at: now, updated_at: now };
        let token = new_token();
        let token_row = api_token::NewRow {
            id: api_token::new_id(),
            user_id: user_row.id.clone(),
            name: "test".into(),
            token_hash: token_hash(&token),
            last_used_at: None,
            expires_at,
            revoked_at: revoked.then_some(now),
            created_at: now,
            updated_at: now,
        };
        let user_id = user_row.id.clone();
        async {
            iofold_graph::with_conn!(&self.state.db, |conn| {
                diesel::insert_into(users::table).values(&user_row).execute(conn).await?;
                diesel::insert_into(api_tokens::table).values(&token_row).execute(conn).await?;
            });
            Ok::<_, DbError>(())
        }
        .await
        .expect("insert user and token");
        (user_id, token)
    }
}

impl TestResponse {
    /// The `extensions.code` of the first error.
    pub fn error_code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }

    /// `data`, after asserting there were no errors.
    pub fn data(&self) -> &Value {
        assert!(self.body.get("errors").is_none(), "unexpected errors: {}", self.body);
        &self.body["data"]
    }
}
