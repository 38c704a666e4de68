//! Mutations: the `Mutation` root, generated from the catalog like the reads.
//!
//! Every table the API may write gets `create<Type>(input: Create<Type>Input!)`,
//! `update<Type>(id: ID!, patch: <Type>Patch!)` and `delete<Type>(id: ID!)` as its
//! [`policy`] allows, all served by the one generic implementation in [`generic`]; the
//! domain mutations ([`domain`]) replace or complement them where the model has more to
//! say. Every mutation runs in one transaction ([`in_tx!`]): checked input first
//! ([`input`]), then authorization against the row's workspace, references, the table's
//! [`rules`] and the write ([`store`]); any failure rolls everything back. Once it has
//! committed, the jobs and executions it wrote are announced to their subscribers
//! ([`Announcer`]).

pub mod domain;
pub mod generic;
pub mod input;
pub mod payload;
pub mod policy;
pub mod rules;
pub mod store;

use async_graphql::dynamic::{Field, FieldFuture, InputValue, Object, ResolverContext, SchemaBuilder, TypeRef};
use serde_json::{Map, Value};

use crate::catalog::{self, Table};
use crate::config::Config;
use crate::crypto::SecretBox;
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::events::{Event, EventBus};
use crate::graphql::names;
use crate::graphql::records::Record;
use crate::graphql::schema::access;
use payload::{field, Payload};

/// The name of the mutation root type.
pub const ROOT: Option<&str> = Some("Mutation");

/// The server's encryption of integration API keys, added to each request's data
/// ([`with_config`]).
#[derive(Clone)]
pub struct Secrets(pub SecretBox);

/// Announces what a committed mutation wrote to the subscriptions watching it (jobs,
/// executions and their steps: [`crate::events`]), and changed memberships and revoked
/// tokens to the open WebSocket connections. Made from the resolver's context before
/// the write; used after the transaction committed. Without an event bus in the request
/// (outside the server) it does nothing.
pub struct Announcer<'a> {
    bus: Option<&'a EventBus>,
    db: Option<&'a Db>,
}

impl<'a> Announcer<'a> {
    /// The request's announcer.
    pub fn of(ctx: &ResolverContext<'a>) -> Self {
        Announcer { bus: ctx.data_opt::<EventBus>(), db: ctx.data_opt::<Db>() }
    }

    /// Announces the rows of a payload.
    pub async fn payload(&self, payload: &Payload) {
        self.send(payload.records().filter_map(Event::of_record).collect()).await;
    }

    /// Announces a deleted row.
    pub async fn deleted(&self, table: &Table, id: &str) {
        self.send(Event::of_deleted(table, id).into_iter().collect()).await;
    }

    async fn send(&self, events: Vec<Event>) {
        if let (Some(bus), Some(db), false) = (self.bus, self.db, events.is_empty()) {
            bus.publish(db, events).await;
        }
    }
}

/// Adds what mutations need from the configuration to a request.
pub fn with_config(request: async_graphql::Request, config: &Config) -> async_graphql::Request {
    request.data(Secrets(config.secrets.clone()))
}

/// Runs `$body` with `$tx` bound to a [`store::Tx`] in one write transaction; evaluates to
/// the body's `AppResult`. Rolled back when it is an error.
///
/// On SQLite write transactions run one at a time (`BEGIN IMMEDIATE`, queued in the process).
/// On PostgreSQL writers of different rows run in parallel, in one workspace or not: each
/// transaction locks exactly the rows whose state it reads to decide (the row it changes,
/// [`generic::visible`]; an agent whose next version it computes; the evals whose counters
/// it recounts, [`rules::recount_evals`]; a trace whose ratings change; a workspace whose
/// owners it counts), in a fixed order. A transaction that PostgreSQL aborts as a deadlock
/// or a serialization failure ([`AppError::Busy`]) is run again from the start, up to
/// [`store::MAX_ATTEMPTS`] times after a growing random pause. A cancelled request's
/// transaction is rolled back and its connection closed ([`crate::db::Lease`]).
#[macro_export]
macro_rules! in_tx {
    ($db:expr, |$tx:ident| $body:expr) => {
        async {
            let mut attempt = 1u32;
            loop {
                let result: $crate::error::AppResult<_> = $crate::with_tx!($db, async |conn| {
                    let mut tx = $crate::graphql::mutations::store::Tx::from(conn);
                    let $tx = &mut tx;
                    $body
                });
                match result {
                    Err($crate::error::AppError::Busy(detail))
                        if attempt < $crate::graphql::mutations::store::MAX_ATTEMPTS =>
                    {
                        ::tracing::debug!(attempt, %detail, "a write transaction lost a race: retrying");
                        $crate::graphql::mutations::store::backoff(attempt).await;
                        attempt += 1;
                    }
                    Err($crate::error::AppError::Busy(detail)) => {
                        ::tracing::warn!(attempt, %detail, "a write transaction lost every race: giving up");
                        break Err($crate::error::AppError::Busy(detail));
                    }
                    result => break result,
                }
            }
        }
        .await
    };
}

/// Registers the mutation root and its input and payload types.
pub fn register(mut builder: SchemaBuilder) -> SchemaBuilder {
    let mut mutation = Object::new("Mutation").description(
        "Every write. Each mutation runs in one transaction, applied whole or not at all; the mutations of one \
         request run one after another.",
    );
    for table in catalog::tables() {
        let policy = policy::policy(table);
        let one = names::table_names(table).one;
        let type_name = table.type_name;
        if policy.create.is_some() {
            builder = builder.register(input::create_input(table)).register(payload::object(
                format!("Create{type_name}Payload"),
                format!("The result of `create{type_name}`."),
                vec![field(&one, TypeRef::named_nn(type_name), format!("The new {type_name}."))],
            ));
            mutation = mutation.field(create_field(table));
        }
        if policy.update.is_some() {
            builder = builder.register(input::patch_input(table)).register(payload::object(
                format!("Update{type_name}Payload"),
                format!("The result of `update{type_name}`."),
                vec![field(&one, TypeRef::named_nn(type_name), format!("The {type_name} as it is now."))],
            ));
            mutation = mutation.field(update_field(table));
        }
        if policy.delete.is_some() {
            builder = builder.register(payload::object(
                format!("Delete{type_name}Payload"),
                format!("The result of `delete{type_name}`."),
                vec![field("deletedId", TypeRef::named_nn(TypeRef::ID), format!("The id of the deleted {type_name}."))],
            ));
            mutation = mutation.field(delete_field(table));
        }
    }
    let (mutation, builder) = domain::register(mutation, builder);
    builder.register(mutation)
}

fn db<'a>(ctx: &ResolverContext<'a>) -> async_graphql::Result<&'a Db> {
    ctx.data::<Db>()
}

/// The request's encryption of API keys.
pub fn secrets<'a>(ctx: &ResolverContext<'a>) -> AppResult<&'a SecretBox> {
    ctx.data_opt::<Secrets>()
        .map(|s| &s.0)
        .ok_or_else(|| AppError::internal("the request carries no encryption key: call mutations::with_config"))
}

/// Seals an integration's plain-text `apiKey` into `api_key_encrypted`.
fn seal_api_key(
    ctx: &ResolverContext<'_>,
    object: &async_graphql::dynamic::ObjectAccessor<'_>,
    row: &mut Map<String, Value>,
) -> AppResult<()> {
    let Some(key) = input::string_field(object, "apiKey")? else {
        return Ok(());
    };
    if key.is_empty() || key.len() > 4096 || key.contains('\0') {
        return Err(AppError::bad_input("apiKey", "`apiKey` must be 1 to 4096 characters"));
    }
    row.insert("api_key_encrypted".into(), Value::String(secrets(ctx)?.seal(&key)));
    Ok(())
}

fn id_argument(ctx: &ResolverContext<'_>) -> async_graphql::Result<String> {
    Ok(ctx.args.try_get("id")?.string()?.to_owned())
}

fn create_field(table: &'static Table) -> Field {
    let type_name = table.type_name;
    Field::new(format!("create{type_name}"), TypeRef::named_nn(format!("Create{type_name}Payload")), move |ctx| {
        FieldFuture::new(async move {
            let access = access(&ctx)?;
            let db = db(&ctx)?;
            let object = ctx.args.try_get("input")?.object()?;
            let mut row = input::read(table, &policy::create_columns(table), &object, "")?;
            if table.name == "integrations" {
                seal_api_key(&ctx, &object, &mut row)?;
            }
            let record: AppResult<Record> = in_tx!(db, |tx| generic::create(tx, &access, table, row.clone()).await);
            let payload = Payload::new().row(names::table_names(table).one, record?);
            Announcer::of(&ctx).payload(&payload).await;
            payload.done()
        })
    })
    .argument(InputValue::new("input", TypeRef::named_nn(format!("Create{type_name}Input"))))
    .description(format!("Creates {}.", policy::a(type_name)))
}

fn update_field(table: &'static Table) -> Field {
    let type_name = table.type_name;
    Field::new(format!("update{type_name}"), TypeRef::named_nn(format!("Update{type_name}Payload")), move |ctx| {
        FieldFuture::new(async move {
            let access = access(&ctx)?;
            let db = db(&ctx)?;
            let id = id_argument(&ctx)?;
            let object = ctx.args.try_get("patch")?.object()?;
            let mut changes = input::read(table, &policy::patch_columns(table), &object, "")?;
            if !matches!(*access, crate::graphql::access::Access::Admin) {
                if let Some(column) = policy::admin_only_patch_columns(table).iter().find(|c| changes.contains_key(**c))
                {
                    let field = names::camel(column);
                    return Err(AppError::Forbidden(format!(
                        "`{field}` is changed by the server admin only (an address must be proven before it is used)"
                    ))
                    .into());
                }
            }
            if table.name == "integrations" {
                seal_api_key(&ctx, &object, &mut changes)?;
            }
            let record: AppResult<Record> =
                in_tx!(db, |tx| generic::update(tx, &access, table, &id, changes.clone()).await);
            let payload = Payload::new().row(names::table_names(table).one, record?);
            Announcer::of(&ctx).payload(&payload).await;
            payload.done()
        })
    })
    .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
    .argument(InputValue::new("patch", TypeRef::named_nn(format!("{type_name}Patch"))))
    .description(format!("Changes {}; `updatedAt` is stamped by the server.", policy::a(type_name)))
}

fn delete_field(table: &'static Table) -> Field {
    let type_name = table.type_name;
    Field::new(format!("delete{type_name}"), TypeRef::named_nn(format!("Delete{type_name}Payload")), move |ctx| {
        FieldFuture::new(async move {
            let access = access(&ctx)?;
            let db = db(&ctx)?;
            let id = id_argument(&ctx)?;
            let deleted: AppResult<String> = in_tx!(db, |tx| generic::delete(tx, &access, table, &id).await);
            let deleted = deleted?;
            Announcer::of(&ctx).deleted(table, &deleted).await;
            Payload::new().value("deletedId", deleted).done()
        })
    })
    .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
    .description(format!("Deletes {} (and the rows that cascade with it).", policy::a(type_name)))
}
