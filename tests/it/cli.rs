//! The binary's commands, run as a user would run them.

use std::process::{Command, Output};

use crate::both_backends;
use crate::support::db::TestDb;

fn iofold(url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_iofold-graph"));
    command.args(args).env("DATABASE_URL", url).env_remove("APP_ENV").env_remove("NODE_ENV").env("RUST_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the binary runs")
}

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
