//! Configuration: environment variables and command-line flags (a flag wins), validated at
//! start with a clear message for each bad value.

use std::net::{IpAddr, SocketAddr};

use clap::{Args, ValueEnum};

use crate::crypto::{SecretBox, DEVELOPMENT_KEY_HEX};
use crate::db::DatabaseUrl;

/// The settings every command shares, as given.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The database: a SQLite file path (also `sqlite://PATH`) or a `postgres://` URL.
    #[arg(long, env = "DATABASE_URL", default_value = "./iofold.db", global = true)]
    pub database_url: String,

    /// The most database connections open at once.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 10, global = true,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,

    /// The address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1", global = true)]
    pub host: IpAddr,

    /// The port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8080, global = true)]
    pub port: u16,

    /// A server-wide admin secret; requests that send it as `X-Iofold-Admin-Secret` act on
    /// every workspace. At least 16 characters. Unset: no admin access over HTTP.
    #[arg(long, env = "IOFOLD_ADMIN_SECRET", hide_env_values = true, global = true)]
    pub admin_secret: Option<String>,

    /// The key that encrypts integration API keys: 64 hex characters (32 bytes). Required in
    /// production; elsewhere a fixed development key is used, with a warning.
    #[arg(long, env = "IOFOLD_ENCRYPTION_KEY", hide_env_values = true, global = true)]
    pub encryption_key: Option<String>,

    /// The environment; `production` turns on the production safeguards.
    #[arg(long, env = "APP_ENV", global = true)]
    pub app_env: Option<String>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object a line.
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The database.
    pub database_url: DatabaseUrl,
    /// Pool size.
    pub db_pool_size: usize,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The admin secret, if any.
    pub admin_secret: Option<String>,
    /// Encrypts integration API keys.
    pub secrets: SecretBox,
    /// Whether the development encryption key is in use.
    pub development_key: bool,
    /// Whether this is production (`APP_ENV` or `NODE_ENV` is `production`).
    pub production: bool,
    /// Log format.
    pub log_format: LogFormat,
}

impl Config {
    /// Validates the arguments, reporting every bad value at once.
    pub fn from_args(args: &ConfigArgs) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let production = is_production(args.app_env.as_deref(), std::env::var("NODE_ENV").ok().as_deref());
        let database_url = DatabaseUrl::parse(&args.database_url).map_err(|e| problems.push(e)).ok();
        if let Some(secret) = &args.admin_secret {
            if secret.trim().len() < 16 {
                problems.push("IOFOLD_ADMIN_SECRET must be at least 16 characters long".to_owned());
            }
        }
        let (secrets, development_key) = match args.encryption_key.as_deref().map(str::trim) {
            Some(key) if !key.is_empty() => match SecretBox::from_hex(key) {
                Ok(secret_box) => (Some(secret_box), false),
                Err(e) => {
                    problems.push(format!("IOFOLD_ENCRYPTION_KEY {e}"));
                    (None, false)
                }
            },
            _ if production => {
                problems.push(
                    "IOFOLD_ENCRYPTION_KEY is required in production (64 hex characters; e.g. `openssl rand -hex 32`)"
                        .to_owned(),
                );
                (None, false)
            }
            _ => (SecretBox::from_hex(DEVELOPMENT_KEY_HEX).ok(), true),
        };
        match (database_url, secrets) {
            (Some(database_url), Some(secrets)) if problems.is_empty() => Ok(Config {
                database_url,
                db_pool_size: args.db_pool_size as usize,
                listen: SocketAddr::new(args.host, args.port),
                admin_secret: args.admin_secret.clone(),
                secrets,
                development_key,
                production,
                log_format: args.log_format,
            }),
            _ => Err(ConfigError(problems)),
        }
    }
}

/// "Production" means `APP_ENV` or `NODE_ENV` is `production`.
pub fn is_production(app_env: Option<&str>, node_env: Option<&str>) -> bool {
    [app_env, node_env].into_iter().flatten().any(|v| v.trim().eq_ignore_ascii_case("production"))
}

/// Every problem found in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: ConfigArgs,
    }

    fn parse(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("iofold-graph").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_args(&cli.config).map_err(|e| e.to_string())
    }

    #[test]
    fn each_bad_value_gets_a_clear_message() {
        let err =
            parse(&["--database-url", "mysql://x", "--admin-secret", "short", "--encryption-key", "zz"]).unwrap_err();
        assert!(err.contains("unsupported scheme `mysql://`"), "{err}");
        assert!(err.contains("IOFOLD_ADMIN_SECRET must be at least 16"), "{err}");
        assert!(err.contains("IOFOLD_ENCRYPTION_KEY must be 64 hexadecimal"), "{err}");
        assert!(parse(&["--db-pool-size", "0"]).unwrap_err().contains("0 is not in 1..=1000"));
        assert!(parse(&["--port", "70000"]).unwrap_err().contains("70000"));
        let err = parse(&["--app-env", "production"]).unwrap_err();
        assert!(err.contains("IOFOLD_ENCRYPTION_KEY is required in production"), "{err}");
    }

    #[test]
    fn defaults_are_sqlite_with_the_development_key() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.database_url, DatabaseUrl::Sqlite("./iofold.db".into()));
        assert!(config.development_key && !config.production);
        assert_eq!(config.db_pool_size, 10);
        let pg = parse(&["--database-url", "postgresql://u@h/db"]).unwrap();
        assert_eq!(pg.database_url.backend(), crate::db::Backend::Postgres);
    }
}
