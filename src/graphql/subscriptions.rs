//! Subscriptions: the `Subscription` root, served over WebSocket ([`crate::server`]).
//!
//! - `jobUpdated(workspaceId: ID!, jobId: ID): Job!` — every committed change of a job of
//!   the workspace (or of that one job): status, progress, result…
//! - `executionUpdated(executionId: ID!): Execution!` — every committed change of a
//!   workflow execution or of one of its steps.
//!
//! Subscribing checks, with the subscriber's access, that the workspace, job or execution
//! exists for them: another workspace's is `NOT_FOUND`, exactly like a missing one, and
//! never yields an event. Each event ([`crate::events`]) carries ids only: the row is read
//! again with the subscriber's access, so the payload and its relations (`steps`, `workflow`,
//! …) resolve as in a query, with a fresh loader per event ([`execute_with_fresh_loaders`]). A watched job
//! or execution that is deleted ends its subscription; a subscriber that falls behind the
//! bus is dropped with `SUBSCRIPTION_LAGGED`.
//!
//! Each execution runs with one access, fixed: over WebSocket, executions are shared by the
//! subscribers of the same operation under the same access, and a subscriber whose access
//! changes moves to the execution of its new access, or ends with `FORBIDDEN` when that one
//! no longer finds what it watches ([`crate::graphql::shared_subscriptions`]). Each event's
//! row is read with the memberships as they are in the database then
//! ([`Access::live_scope`]), so a member removed since sees nothing more, even before the
//! connection has re-checked its access.

use std::sync::Arc;

use async_graphql::dynamic::{
    FieldValue, InputValue, ResolverContext, SchemaBuilder, Subscription, SubscriptionField, SubscriptionFieldFuture,
    TypeRef,
};
use async_graphql::extensions::{ExtensionContext, NextExecute};
use async_graphql::{Data, ErrorExtensions};
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use crate::catalog::{self, Table};
use crate::db::Db;
use crate::error::AppError;
use crate::events::{Event, EventBus, EventKind};
use crate::graphql::access::Access;
use crate::graphql::records::{self, Record};
use crate::graphql::schema::{access, RequestAccess};
use crate::sql::{Bind, CmpOp, Cond, Select};

/// The name of the subscription root type.
pub const ROOT: Option<&str> = Some("Subscription");

/// The code of the error that ends a subscription that fell behind.
pub const LAGGED: &str = "SUBSCRIPTION_LAGGED";

/// The code of the error that ends a subscription whose caller may no longer see what it
/// watches.
pub const WITHDRAWN: &str = "FORBIDDEN";

/// Registers the subscription root.
pub fn register(builder: SchemaBuilder) -> SchemaBuilder {
    let id = || TypeRef::named_nn(TypeRef::ID);
    let subscription = Subscription::new("Subscription")
        .description(
            "Changes pushed over WebSocket (`graphql-transport-ws`, or the legacy `graphql-ws`) at /graphql, as they \
             commit, from every server instance sharing the database.",
        )
        .field(
            SubscriptionField::new("jobUpdated", TypeRef::named_nn("Job"), |ctx| {
                SubscriptionFieldFuture::new(job_updated(ctx))
            })
            .argument(InputValue::new("workspaceId", id()).description("The workspace whose jobs to watch."))
            .argument(
                InputValue::new("jobId", TypeRef::named(TypeRef::ID))
                    .description("Only this job (of that workspace); the subscription ends if it is deleted."),
            )
            .description(
                "Every committed change of a job of the workspace (status, progress 0–100, result, error…), as the job \
                 is after it. `NOT_FOUND` when the workspace or job does not exist or is not visible to the caller.",
            ),
        )
        .field(
            SubscriptionField::new("executionUpdated", TypeRef::named_nn("Execution"), |ctx| {
                SubscriptionFieldFuture::new(execution_updated(ctx))
            })
            .argument(InputValue::new("executionId", id()).description("The workflow execution to watch."))
            .description(
                "Every committed change of a workflow execution or of one of its steps, as the execution is after it \
                 (select `executionSteps` for the steps). Ends when the execution is deleted. `NOT_FOUND` when it does \
                 not exist or is not visible to the caller.",
            ),
        );
    builder.register(subscription)
}

fn table(name: &str) -> &'static Table {
    catalog::table(name).expect("a table of the catalog")
}

fn eq(column: &'static str, value: &str) -> Cond {
    Cond::Cmp(column, CmpOp::Eq, Bind::Text(value.to_owned()))
}

fn not_found(table: &Table, id: &str) -> AppError {
    AppError::NotFound(format!("no {} with id `{id}`", table.type_name))
}

/// What a subscription watches: rows of `table` (in `workspace_id` when set), events of
/// `kind`, for one row (`id`) or one workspace.
struct Watch {
    table: &'static Table,
    kind: EventKind,
    id: Option<String>,
    workspace_id: Option<String>,
}

impl Watch {
    /// Whether an event may concern this subscription (the row read decides).
    fn wants(&self, event: &Event) -> bool {
        event.kind == self.kind
            && self.id.as_ref().is_none_or(|id| *id == event.id)
            && match (&self.workspace_id, &event.workspace_id) {
                (Some(ours), Some(theirs)) => ours == theirs,
                _ => true,
            }
    }

    /// The row, as the caller of `access` may see it now (memberships read by the same
    /// statement).
    async fn read(&self, db: &Db, access: &Access, id: &str) -> Result<Option<Record>, AppError> {
        let mut visible = vec![eq("id", id), access.live_scope(self.table)];
        visible.extend(self.workspace_id.as_deref().map(|workspace| eq("workspace_id", workspace)));
        let select = Select::rows(self.table, Cond::all(visible));
        Ok(records::load(db, select).await?.into_iter().next())
    }
}

/// A stream of a subscription's payloads.
type Payloads<'a> = BoxStream<'a, async_graphql::Result<FieldValue<'a>>>;

/// Request data of an execution that says when its subscription listens: set to `true` once
/// its receiver of the bus is open and what it watches was found, so no change committed
/// after that is missed ([`crate::graphql::shared_subscriptions`] counts its subscribers as
/// live from then on). Dropped with the execution.
pub struct Listening(pub tokio::sync::watch::Sender<bool>);

async fn job_updated(ctx: ResolverContext<'_>) -> async_graphql::Result<Payloads<'_>> {
    let access = access(&ctx)?;
    let db = ctx.data::<Db>()?.clone();
    let bus = ctx.data::<EventBus>()?.clone();
    let workspace_id = ctx.args.try_get("workspaceId")?.string()?.to_owned();
    let job_id = ctx.args.get("jobId").filter(|v| !v.is_null()).map(|v| v.string().map(str::to_owned)).transpose()?;
    let (jobs, workspaces) = (table("jobs"), table("workspaces"));
    let watch =
        Watch { table: jobs, kind: EventKind::Job, id: job_id.clone(), workspace_id: Some(workspace_id.clone()) };
    // Listening before looking: a change committed right after the look is heard.
    let receiver = bus.subscribe().await?;
    match &job_id {
        Some(id) if watch.read(&db, &access, id).await?.is_none() => return Err(not_found(jobs, id).into()),
        Some(_) => {}
        None => {
            if !exists(&db, &access, workspaces, &workspace_id).await? {
                return Err(not_found(workspaces, &workspace_id).into());
            }
        }
    }
    Ok(watch_events(db, bus, receiver, watch, access, ctx.data_opt::<Listening>()))
}

async fn execution_updated(ctx: ResolverContext<'_>) -> async_graphql::Result<Payloads<'_>> {
    let access = access(&ctx)?;
    let db = ctx.data::<Db>()?.clone();
    let bus = ctx.data::<EventBus>()?.clone();
    let execution_id = ctx.args.try_get("executionId")?.string()?.to_owned();
    let executions = table("executions");
    let watch =
        Watch { table: executions, kind: EventKind::Execution, id: Some(execution_id.clone()), workspace_id: None };
    let receiver = bus.subscribe().await?;
    if watch.read(&db, &access, &execution_id).await?.is_none() {
        return Err(not_found(executions, &execution_id).into());
    }
    Ok(watch_events(db, bus, receiver, watch, access, ctx.data_opt::<Listening>()))
}

/// Whether the caller may see the row of `table` with this id (memberships as they are now).
async fn exists(db: &Db, access: &Access, table: &'static Table, id: &str) -> Result<bool, AppError> {
    let select = Select::rows(table, Cond::all(vec![eq("id", id), access.live_scope(table)]));
    Ok(!records::load(db, select).await?.is_empty())
}

/// A live subscription: its receiver of the bus, what it watches and with which access; the
/// row it pushed last (id and `updated_at`), so changes read together push it once.
struct Watching {
    receiver: tokio::sync::broadcast::Receiver<Event>,
    db: Db,
    bus: EventBus,
    watch: Watch,
    access: Arc<Access>,
    last: Option<(String, serde_json::Value)>,
}

/// The rows the bus announces for this watch, read again as the subscriber sees them: each
/// event pushes the row as it is when read (changes committed in a quick burst may arrive
/// as their latest state: never out of order, never the same state twice in a row). Tells
/// `listening` that it listens.
fn watch_events<'a>(
    db: Db,
    bus: EventBus,
    receiver: tokio::sync::broadcast::Receiver<Event>,
    watch: Watch,
    access: Arc<Access>,
    listening: Option<&Listening>,
) -> Payloads<'a> {
    if let Some(Listening(listening)) = listening {
        listening.send_replace(true);
    }
    let state = Some(Watching { receiver, db, bus, watch, access, last: None });
    stream::unfold(state, |state| async move {
        let mut state = state?;
        loop {
            let received = state.receiver.recv().await;
            let Watching { db, bus, watch, access, last, .. } = &mut state;
            match received {
                Ok(event) if watch.wants(&event) => match watch.read(db, access, &event.id).await {
                    Ok(Some(record)) => {
                        // Changes read together push the row once.
                        let version = (record.id().to_owned(), record.get("updated_at").clone());
                        if last.as_ref() == Some(&version) {
                            continue;
                        }
                        *last = Some(version);
                        return Some((Ok(FieldValue::owned_any(record)), Some(state)));
                    }
                    // The watched row is gone: the subscription is complete.
                    Ok(None) if watch.id.is_some() => return None,
                    Ok(None) => continue,
                    Err(error) => return Some((Err(error.into()), None)),
                },
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    bus.lagged();
                    tracing::info!(missed, "a subscription fell behind the event bus and was dropped");
                    return Some((Err(lagged(missed)), None));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

/// The error that ends a subscription that fell `missed` changes behind.
pub fn lagged(missed: u64) -> async_graphql::Error {
    async_graphql::Error::new(format!(
        "this subscription fell {missed} changes behind and was dropped; subscribe again (and re-read the current \
         state)"
    ))
    .extend_with(|_, ext| ext.set("code", LAGGED))
}

/// The error that ends a subscription whose caller may no longer see what it watches.
pub fn withdrawn() -> async_graphql::Error {
    async_graphql::Error::new("the caller may no longer see what this subscription watches")
        .extend_with(|_, ext| ext.set("code", WITHDRAWN))
}

/// Marks a request whose every execution gets a fresh loader ([`execute_with_fresh_loaders`]): the
/// operations over WebSocket ([`crate::graphql::with_subscription_data`]).
pub struct LoaderPerExecution;

/// Gives every execution of a request marked [`LoaderPerExecution`] a fresh loader bound to
/// the request's access, in place of the request's loader: each event of a subscription
/// resolves with its own loader (and so sees the rows as they are now), like a request of
/// its own. Called by the schema's one
/// extension (`server::guard`) around every execution: a second extension would wrap every
/// field's resolver once more. (async-graphql runs a query or mutation sent over WebSocket
/// without this hook: it uses the request's loader, once.)
pub async fn execute_with_fresh_loaders(
    ctx: &ExtensionContext<'_>,
    operation_name: Option<&str>,
    next: NextExecute<'_>,
) -> async_graphql::Response {
    let (Some(_), Some(db), Some(RequestAccess(Some(access)))) =
        (ctx.data_opt::<LoaderPerExecution>(), ctx.data_opt::<Db>(), ctx.data_opt::<RequestAccess>())
    else {
        return next.run(ctx, operation_name).await;
    };
    let mut data = Data::default();
    data.insert(crate::graphql::loader_for(db, access.clone()));
    next.run_with_data(ctx, operation_name, data).await
}
