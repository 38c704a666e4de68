//! The binary's commands, run as a user would run them: `iofold-graph <args>` against a
//! database, with the environment a test sets, and checks of what it printed.

use std::process::{Command, Output};

/// Runs the binary with `DATABASE_URL` and `env` (no `APP_ENV`, warnings only in the log).
pub fn iofold(url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_iofold-graph"));
    command.args(args).env("DATABASE_URL", url).env_remove("APP_ENV").env_remove("NODE_ENV").env("RUST_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the binary runs")
}

/// Runs the binary on a blocking thread.
pub async fn cmd(url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let url = url.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        iofold(&url, &args, &env)
    })
    .await
    .unwrap()
}

pub fn out(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[track_caller]
pub fn succeeded(output: &Output) {
    assert!(output.status.success(), "expected success:\n{}", out(output));
}

#[track_caller]
pub fn failed_with(output: &Output, needles: &[&str]) {
    assert!(!output.status.success(), "expected a failure:\n{}", out(output));
    let text = out(output);
    for needle in needles {
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
    }
}
