//! The command line: `serve` (the default), `migrate`, `seed`, `schema`, `token`, and the
//! database commands of [`crate::ops`] (`reset`, `nuke`, `health`, `export`, `import`, `backup`).

use clap::{Parser, Subcommand};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::config::{Config, ConfigArgs, ServerArgs};
use crate::crypto::{new_token, token_hash};
use crate::db::sql_types::Timestamp;
use crate::db::{migrations, Db, DbError, PoolOptions};
use crate::models::{api_token, user};
use crate::schema::{api_tokens, users};
use crate::server::{serve, AppState};
use crate::{seed, with_conn};

/// iofold-graph: a GraphQL API server for the iofold evaluation platform.
#[derive(Debug, Parser)]
#[command(name = "iofold-graph", version, about, long_about = None)]
pub struct Cli {
    /// Settings shared by every command.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The server's limits and operations settings (`serve`).
    #[command(flatten)]
    pub server: ServerArgs,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations, then serve GraphQL at /graphql (the default command).
    Serve {
        /// Load the demo data first (refused in production), printing the demo token on its
        /// first run.
        #[arg(long)]
        seed: bool,
    },
    /// Apply pending migrations (refused when the database is newer than this binary). On
    /// SQLite a verified copy of the database is taken first; on PostgreSQL the pg_dump
    /// command to take one is printed.
    Migrate {
        /// Only list applied and pending migrations, and compare the schema with what the
        /// applied migrations define (exits non-zero on any difference).
        #[arg(long, conflicts_with = "revert")]
        status: bool,
        /// Revert the last N applied migrations (default 1) with their down.sql. Refused in
        /// production without --allow-production.
        #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1",
              value_parser = clap::value_parser!(u32).range(1..))]
        revert: Option<u32>,
        /// Take no copy of the database before changing it.
        #[arg(long, conflicts_with = "status")]
        no_backup: bool,
        /// Allow --revert in production (APP_ENV or NODE_ENV = production).
        #[arg(long, requires = "revert")]
        allow_production: bool,
    },
    /// Load the demo data (idempotent; refused in production).
    Seed,
    /// Print the GraphQL schema (SDL), as in schema.graphql.
    Schema,
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Maintenance: reset, nuke, health, export, import, backup (see `crate::ops`).
    #[command(flatten)]
    Ops(crate::ops::OpsCommand),
}

/// API token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for a user (created too if no user has that email) and print it once.
    Create {
        /// The user's email.
        #[arg(long)]
        email: String,
        /// A label for the token.
        #[arg(long)]
        name: String,
        /// Days until it expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List tokens (never their secrets).
    List {
        /// Only this user's tokens.
        #[arg(long)]
        email: Option<String>,
    },
    /// Revoke a token by its id.
    Revoke {
        /// The token's id (`api_token_…`).
        id: String,
    },
}

/// Runs the command line; the error, if any, is printed by `main`.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve { seed: false });
    if let Command::Schema = command {
        print!("{}", crate::graphql::schema_file().await);
        return Ok(());
    }
    let config = Config::from_all(&cli.config, &cli.server)?;
    match command {
        Command::Schema => unreachable!("handled above"),
        Command::Migrate { status: true, .. } => {
            let status = migrations::status(&config.database_url).await?;
            for version in &status.applied {
                println!("applied  {version}");
            }
            for version in &status.pending {
                println!("pending  {version}");
            }
            for version in &status.unknown {
                println!("UNKNOWN  {version} (applied by a newer iofold-graph)");
            }
            if !status.unknown.is_empty() {
                anyhow::bail!("the database is newer than this binary");
            }
            let drift = crate::ops::drift::check(&config.database_url).await?;
            match drift.status {
                "ok" => println!("schema   matches the {} applied migration(s)", drift.migrations.len()),
                "drift" => {
                    println!("schema   {} difference(s) from the applied migrations:", drift.differences.len());
                    for difference in &drift.differences {
                        println!("  - {difference}");
                    }
                    anyhow::bail!(
                        "the schema differs from what its migrations define ({} difference(s))",
                        drift.differences.len()
                    );
                }
                _ => println!("schema   not compared: {}", drift.reason.unwrap_or_default()),
            }
        }
        Command::Migrate { status: false, revert: Some(n), no_backup, allow_production } => {
            if config.production && !allow_production {
                anyhow::bail!(
                    "migrate --revert is refused in production (APP_ENV or NODE_ENV is `production`): it runs the \
                     migrations' down.sql, which drops what they created. Nothing was touched; add \
                     --allow-production to do it anyway"
                );
            }
            crate::ops::guard::existing_sqlite("migrate --revert", &config.database_url)?;
            let policy = if no_backup { migrations::BackupPolicy::Skip } else { migrations::BackupPolicy::Take };
            let reverted =
                migrations::revert(&config.database_url, n as usize, policy, |line| println!("{line}")).await?;
            for version in reverted {
                println!("reverted {version}");
            }
        }
        Command::Migrate { status: false, revert: None, no_backup, .. } => {
            let policy = if no_backup { migrations::BackupPolicy::Skip } else { migrations::BackupPolicy::Take };
            let applied =
                migrations::run_pending_with_backup(&config.database_url, policy, |line| println!("{line}")).await?;
            if applied.is_empty() {
                println!("nothing to migrate: the database is up to date");
            }
            for version in applied {
                println!("applied  {version}");
            }
        }
        Command::Seed => {
            let db = open(&config).await?;
            report_seed(&seed::run(&db, &config).await?);
        }
        Command::Serve { seed: with_seed } => {
            warn_development_key(&config);
            let db = open(&config).await?;
            if with_seed {
                report_seed(&seed::run(&db, &config).await?);
            }
            println!("GraphiQL: http://{}/graphql", config.listen);
            serve(AppState::new(db, config)).await?;
        }
        Command::Ops(command) => crate::ops::run(command, &config).await?,
        Command::Token(token) => {
            let db = open(&config).await?;
            token_command(&db, token).await?;
        }
    }
    Ok(())
}

/// Applies pending migrations (after a backup, as `migrate` does) and opens the pool.
async fn open(config: &Config) -> anyhow::Result<Db> {
    let applied = migrations::run_pending_with_backup(&config.database_url, migrations::BackupPolicy::Take, |line| {
        tracing::info!("{line}")
    })
    .await?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "applied migrations");
    }
    Ok(Db::connect(&config.database_url, &PoolOptions { max_size: config.db_pool_size })?)
}

fn warn_development_key(config: &Config) {
    if config.development_key {
        tracing::warn!(
            "IOFOLD_ENCRYPTION_KEY is not set: integration API keys are encrypted with the public development key; \
             set a key of your own (e.g. `openssl rand -hex 32`) before storing real secrets"
        );
    }
}

fn report_seed(outcome: &seed::SeedOutcome) {
    match &outcome.new_token {
        Some(token) => {
            println!("Demo data loaded. API token for {} (shown once, keep it):", seed::DEMO_EMAIL);
            println!("  {token}");
            println!("Send it as the header  Authorization: Bearer {token}");
        }
        None => println!(
            "Demo data is in place. The demo token exists already and its secret is shown only once; \
             make another with: iofold-graph token create --email {} --name <label>",
            seed::DEMO_EMAIL
        ),
    }
}

async fn token_command(db: &Db, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { email, name, expires_in_days } => {
            let email = email.trim().to_lowercase();
            if !crate::validate::is_email(&email) {
                anyhow::bail!("`{email}` is not an email address");
            }
            let expires_at = expires_in_days
                .map(|days| Timestamp::from_datetime(chrono::Utc::now() + chrono::Duration::days(i64::from(days))));
            let token = new_token();
            let (user_id, created) = create_token(db, &email, &name, &token_hash(&token), expires_at).await?;
            if created {
                println!("Created user {email} ({user_id}).");
            }
            println!("API token for {email} (shown once, keep it):\n  {token}");
        }
        TokenCommand::List { email } => {
            let rows = list_tokens(db, email.map(|e| e.trim().to_lowercase())).await?;
            if rows.is_empty() {
                println!("no tokens");
            }
            for (token, email) in rows {
                let state = match (token.revoked_at, token.expires_at) {
                    (Some(at), _) => format!("revoked {at}"),
                    (None, Some(at)) if at <= Timestamp::now() => format!("expired {at}"),
                    (None, Some(at)) => format!("expires {at}"),
                    (None, None) => "active".to_owned(),
                };
                let used = token.last_used_at.map_or("never used".to_owned(), |at| format!("last used {at}"));
                println!("{}  {}  {}  created {}  {}  {}", token.id, email, token.name, token.created_at, used, state);
            }
        }
        TokenCommand::Revoke { id } => {
            if revoke_token(db, &id).await? == 0 {
                anyhow::bail!("no active token with id `{id}`");
            }
            // Running servers' WebSocket connections re-check their callers.
            crate::events::announce_from_outside(db, vec![crate::events::Event::access_of_everyone()]).await;
            println!("revoked {id}");
        }
    }
    Ok(())
}

async fn create_token(
    db: &Db,
    email: &str,
    name: &str,
    hash: &str,
    expires_at: Option<Timestamp>,
) -> Result<(String, bool), DbError> {
    let now = Timestamp::now();
    let new_user =
        user::NewRow { id: user::new_id(), email: email.to_owned(), name: None, created_at: now, updated_at: now };
    let token_id = api_token::new_id();
    Ok(crate::with_tx!(db, async |conn| {
        let inserted =
            diesel::insert_into(users::table).values(&new_user).on_conflict_do_nothing().execute(conn).await?;
        let user_id: String = users::table.filter(users::email.eq(email)).select(users::id).first(conn).await?;
        diesel::insert_into(api_tokens::table)
            .values(api_token::NewRow {
                id: token_id.clone(),
                user_id: user_id.clone(),
                name: name.to_owned(),
                token_hash: hash.to_owned(),
                last_used_at: None,
                expires_at,
                revoked_at: None,
                created_at: now,
                updated_at: now,
            })
            .execute(conn)
            .await?;
        Ok::<_, diesel::result::Error>((user_id, inserted == 1))
    })?)
}

async fn list_tokens(db: &Db, email: Option<String>) -> Result<Vec<(api_token::Row, String)>, DbError> {
    Ok(with_conn!(db, |conn| {
        let mut query = api_tokens::table
            .inner_join(users::table.on(users::id.eq(api_tokens::user_id)))
            .select((api_token::Row::as_select(), users::email))
            .order((api_tokens::created_at, api_tokens::id))
            .into_boxed();
        if let Some(email) = &email {
            query = query.filter(users::email.eq(email));
        }
        query.load(conn).await?
    }))
}

async fn revoke_token(db: &Db, id: &str) -> Result<usize, DbError> {
    let now = Timestamp::now();
    Ok(with_conn!(db, |conn| {
        diesel::update(api_tokens::table.filter(api_tokens::id.eq(id)).filter(api_tokens::revoked_at.is_null()))
            .set((api_tokens::revoked_at.eq(now), api_tokens::updated_at.eq(now)))
            .execute(conn)
            .await?
    }))
}
