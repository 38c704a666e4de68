//! The binary's commands, run as a user would run them.

use std::process::Output;

use crate::both_backends;
use crate::support::cli::iofold;
use crate::support::db::TestDb;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

both_backends! {
    async fn migrate_seed_and_token_commands(backend: Backend) {
        let test_db = TestDb::empty(backend).await;
        let url = test_db.url.as_str().to_owned();
        let run = move |args: &'static [&'static str], env: &'static [(&'static str, &'static str)]| {
            let url = url.clone();
            async move { tokio::task::spawn_blocking(move || iofold(&url, args, env)).await.unwrap() }
        };

        let status = run(&["migrate", "--status"], &[]).await;
        assert!(status.status.success(), "{}", stderr(&status));
        assert!(stdout(&status).contains("pending  20261121000001"), "{}", stdout(&status));

        // Production refuses the seed and touches nothing.
        let refused = run(&["seed"], &[("APP_ENV", "production"), ("IOFOLD_ENCRYPTION_KEY", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")]).await;
        assert!(!refused.status.success());
        assert!(stderr(&refused).contains("refused in production"), "{}", stderr(&refused));
        let refused_node = run(&["seed"], &[("NODE_ENV", "production")]).await;
        assert!(!refused_node.status.success());
        assert!(stderr(&refused_node).contains("IOFOLD_ENCRYPTION_KEY is required in production"), "{}", stderr(&refused_node));

        let migrate = run(&["migrate"], &[]).await;
        assert!(migrate.status.success(), "{}", stderr(&migrate));
        assert_eq!(iofold_graph::db::count_rows(&test_db.db, "users").await.unwrap(), 0, "nothing seeded in production");
        let again = run(&["migrate"], &[]).await;
        assert!(stdout(&again).contains("nothing to migrate"), "{}", stdout(&again));
        let status = run(&["migrate", "--status"], &[]).await;
        assert!(stdout(&status).contains("applied  20261121000001"));

        let seeded = run(&["seed"], &[]).await;
        assert!(seeded.status.success(), "{}", stderr(&seeded));
        assert!(stdout(&seeded).contains("Authorization: Bearer iofold_"), "{}", stdout(&seeded));
        let reseeded = run(&["seed"], &[]).await;
        assert!(stdout(&reseeded).contains("token create --email demo@iofold.dev"), "{}", stdout(&reseeded));
        assert!(!stdout(&reseeded).contains("Bearer iofold_"));

        let created = run(&["token", "create", "--email", "Ops@Example.com", "--name", "ops"], &[]).await;
        assert!(created.status.success(), "{}", stderr(&created));
        assert!(stdout(&created).contains("Created user ops@example.com"));
        let list = run(&["token", "list", "--email", "ops@example.com"], &[]).await;
        let line = stdout(&list);
        assert!(line.contains("ops@example.com  ops") && line.contains("active"), "{line}");
        let id = line.split_whitespace().next().unwrap().to_owned();
        let id: &'static str = Box::leak(id.into_boxed_str());
        let args: &'static [&'static str] = Box::leak(vec!["token", "revoke", id].into_boxed_slice());
        let revoked = run(args, &[]).await;
        assert!(revoked.status.success(), "{}", stderr(&revoked));
        let again = run(args, &[]).await;
        assert!(!again.status.success(), "revoking twice is an error");
        let list = run(&["token", "list", "--email", "ops@example.com"], &[]).await;
        assert!(stdout(&list).contains("revoked"), "{}", stdout(&list));

        let bad = run(&["token", "create", "--email", "not-an-email", "--name", "x"], &[]).await;
        assert!(!bad.status.success() && stderr(&bad).contains("is not an email address"));
    }
}

#[test]
fn bad_configuration_is_reported_before_anything_runs() {
    let output = iofold("mysql://db", &["migrate"], &[("DB_POOL_SIZE", "5"), ("IOFOLD_ADMIN_SECRET", "short")]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("unsupported scheme `mysql://`") && err.contains("IOFOLD_ADMIN_SECRET must be at least 16"),
        "{err}"
    );
    let output = iofold("./x.db", &["migrate"], &[("DB_POOL_SIZE", "0")]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("0 is not in 1..=1000"), "{}", stderr(&output));
}

#[tokio::test]
async fn schema_command_prints_the_sdl() {
    let output = iofold("./unused.db", &["schema"], &[]);
    assert!(output.status.success());
    assert_eq!(stdout(&output), iofold_graph::graphql::schema_file().await);
}

both_backends! {
    async fn seed_works_whatever_rows_exist(backend: Backend) {
        use crate::support::fixtures::{count, execute, quote, Fixtures};
        let test_db = TestDb::migrated(backend).await;
        let url = test_db.url.as_str().to_owned();
        let run = move |args: Vec<&'static str>| {
            let url = url.clone();
            async move { tokio::task::spawn_blocking(move || iofold(&url, &args, &[])).await.unwrap() }
        };
        let demo = iofold_graph::seed::DEMO_EMAIL;
        let db = &test_db.db;

        // A token for the demo address first: the user exists under another id.
        let created = run(vec!["token", "create", "--email", "demo@iofold.dev", "--name", "early"]).await;
        assert!(created.status.success(), "{}", stderr(&created));
        let seeded = run(vec!["seed"]).await;
        assert!(seeded.status.success(), "{}{}", stdout(&seeded), stderr(&seeded));
        assert!(stdout(&seeded).contains("Authorization: Bearer iofold_"), "{}", stdout(&seeded));
        assert_eq!(count(db, "users", None).await, 1, "one demo user");
        let user = format!("(SELECT id FROM users WHERE email = {})", quote(demo));
        let workspace = quote(&iofold_graph::seed::ids::workspace());
        assert_eq!(count(db, "workspace_members", Some(&format!("workspace_id = {workspace} AND user_id = {user} AND role = 'owner'"))).await, 1);
        assert_eq!(count(db, "api_tokens", Some(&format!("user_id = {user}"))).await, 2, "the early token and the demo token");
        for table in ["traces", "feedback", "eval_executions", "execution_steps"] {
            assert!(count(db, table, None).await > 0, "{table} seeded");
        }

        // A demo trace replaced by another row holding its unique key; the demo version 1
        // replaced likewise: the seed loads around them.
        let fx = Fixtures::new(db);
        let trace = quote(&format!("trace_0194a1b2-0000-7000-8000-{:012}", 1));
        execute(db, &format!("DELETE FROM traces WHERE id = {trace}")).await.unwrap();
        fx.insert("traces", &iofold_graph::seed::ids::workspace(), &[("trace_id", "lf-trace-0001".into()), ("source", "langfuse".into())]).await;
        let version = quote(&format!("agent_version_0194a1b2-0000-7000-8000-{:012}", 1));
        execute(db, &format!("UPDATE agent_versions SET parent_version_id = NULL WHERE parent_version_id = {version}")).await.unwrap();
        execute(db, &format!("DELETE FROM agent_versions WHERE id = {version}")).await.unwrap();
        fx.insert("agent_versions", "", &[("agent_id", iofold_graph::seed::ids::agent().into()), ("version", 1i64.into())]).await;
        let traces = count(db, "traces", None).await;
        let reseeded = run(vec!["seed"]).await;
        assert!(reseeded.status.success(), "{}{}", stdout(&reseeded), stderr(&reseeded));
        assert_eq!(count(db, "traces", None).await, traces, "the replaced demo trace stays replaced");
        assert_eq!(count(db, "feedback", Some(&format!("trace_id = {trace}"))).await, 0);
        assert_eq!(count(db, "users", Some(&format!("email = {}", quote(demo)))).await, 1);
        let health = run(vec!["health"]).await;
        assert!(health.status.success(), "{}{}", stdout(&health), stderr(&health));
    }
}
