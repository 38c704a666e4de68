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
//! The subscriber's access is current, not the one it subscribed with: each event's row is
//! read with the memberships as they are in the database then ([`Access::live_scope`]), and
//! its fields resolve with the connection's access as last re-checked ([`LiveAccess`]). When
//! that access changes so that the watched workspace or execution is no longer visible (the
//! member was removed, the workspace deleted), the subscription ends with `FORBIDDEN`; when
//! the credential is gone, with `UNAUTHENTICATED` (and the connection closes).

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
use crate::graphql::access::{Access, LiveAccess};
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

/// What a subscription watches: rows of `table` the subscriber may see (in `workspace_id`
/// when set), events of `kind`, for one row (`id`) or one workspace.
struct Watch {
    table: &'static Table,
    kind: EventKind,
    id: Option<String>,
    workspace_id: Option<String>,
    /// The subscriber's access, as last re-checked.
    access: Arc<Access>,
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

    /// The row, as the subscriber may see it now (memberships read by the same statement).
    async fn read(&self, db: &Db, id: &str) -> Result<Option<Record>, AppError> {
        let mut visible = vec![eq("id", id), self.access.live_scope(self.table)];
        visible.extend(self.workspace_id.as_deref().map(|workspace| eq("workspace_id", workspace)));
        let select = Select::rows(self.table, Cond::all(visible));
        Ok(records::load(db, select).await?.into_iter().next())
    }

    /// Whether the subscriber may still watch: its workspace, or its row, is visible.
    async fn allowed(&self, db: &Db) -> Result<bool, AppError> {
        match (&self.workspace_id, &self.id) {
            (Some(workspace), _) => exists(db, &self.access, table("workspaces"), workspace).await,
            (None, Some(id)) => Ok(self.read(db, id).await?.is_some()),
            (None, None) => Ok(true),
        }
    }
}

/// A stream of a subscription's payloads.
type Payloads<'a> = BoxStream<'a, async_graphql::Result<FieldValue<'a>>>;

async fn job_updated(ctx: ResolverContext<'_>) -> async_graphql::Result<Payloads<'_>> {
    let access = access(&ctx)?;
    let db = ctx.data::<Db>()?.clone();
    let bus = ctx.data::<EventBus>()?.clone();
    let workspace_id = ctx.args.try_get("workspaceId")?.string()?.to_owned();
    let job_id = ctx.args.get("jobId").filter(|v| !v.is_null()).map(|v| v.string().map(str::to_owned)).transpose()?;
    let live = ctx.data_opt::<LiveAccess>().cloned();
    let (jobs, workspaces) = (table("jobs"), table("workspaces"));
    let watch = Watch {
        table: jobs,
        kind: EventKind::Job,
        id: job_id.clone(),
        workspace_id: Some(workspace_id.clone()),
        access: access.clone(),
    };
    match &job_id {
        Some(id) if watch.read(&db, id).await?.is_none() => return Err(not_found(jobs, id).into()),
        Some(_) => {}
        None => {
            if !exists(&db, &access, workspaces, &workspace_id).await? {
                return Err(not_found(workspaces, &workspace_id).into());
            }
        }
    }
    Ok(watch_events(db, bus, watch, live).await?)
}

async fn execution_updated(ctx: ResolverContext<'_>) -> async_graphql::Result<Payloads<'_>> {
    let access = access(&ctx)?;
    let db = ctx.data::<Db>()?.clone();
    let bus = ctx.data::<EventBus>()?.clone();
    let execution_id = ctx.args.try_get("executionId")?.string()?.to_owned();
    let live = ctx.data_opt::<LiveAccess>().cloned();
    let executions = table("executions");
    let watch = Watch {
        table: executions,
        kind: EventKind::Execution,
        id: Some(execution_id.clone()),
        workspace_id: None,
        access,
    };
    if watch.read(&db, &execution_id).await?.is_none() {
        return Err(not_found(executions, &execution_id).into());
    }
    Ok(watch_events(db, bus, watch, live).await?)
}

/// Whether the caller may see the row of `table` with this id (memberships as they are now).
async fn exists(db: &Db, access: &Access, table: &'static Table, id: &str) -> Result<bool, AppError> {
    let select = Select::rows(table, Cond::all(vec![eq("id", id), access.live_scope(table)]));
    Ok(!records::load(db, select).await?.is_empty())
}

/// A live subscription: its receiver of the bus and what it watches; the row it pushed last
/// (id and `updated_at`), so changes read together push it once; the connection's access
/// (over WebSocket).
struct Watching {
    receiver: tokio::sync::broadcast::Receiver<Event>,
    _live: crate::events::Live,
    db: Db,
    bus: EventBus,
    watch: Watch,
    last: Option<(String, serde_json::Value)>,
    access: Option<LiveAccess>,
}

/// What a change of the connection's access means for a subscription.
enum Recheck {
    /// It goes on (with the new access).
    Continue,
    /// It ends with this error.
    End(async_graphql::Error),
}

impl Watching {
    /// Takes the connection's new access: the subscription ends when the credential is gone
    /// or what it watches is no longer visible.
    async fn recheck(&mut self) -> Recheck {
        let current = match &mut self.access {
            Some(LiveAccess(receiver)) => receiver.borrow_and_update().clone(),
            None => return Recheck::Continue,
        };
        let Some(access) = current else {
            return Recheck::End(AppError::Unauthenticated("the credential was revoked or has expired".into()).into());
        };
        if access == self.watch.access {
            return Recheck::Continue;
        }
        self.watch.access = access;
        match self.watch.allowed(&self.db).await {
            Ok(true) => Recheck::Continue,
            Ok(false) => Recheck::End(
                async_graphql::Error::new("the caller may no longer see what this subscription watches")
                    .extend_with(|_, ext| ext.set("code", WITHDRAWN)),
            ),
            Err(error) => Recheck::End(error.into()),
        }
    }
}

/// The rows the bus announces for this watch, read again as the subscriber sees them: each
/// event pushes the row as it is when read (changes committed in a quick burst may arrive
/// as their latest state: never out of order, never the same state twice in a row).
async fn watch_events<'a>(
    db: Db,
    bus: EventBus,
    watch: Watch,
    mut access: Option<LiveAccess>,
) -> Result<Payloads<'a>, AppError> {
    let (receiver, live) = bus.subscribe().await?;
    if let Some(LiveAccess(receiver)) = &mut access {
        receiver.mark_unchanged();
    }
    let state = Some(Watching { receiver, _live: live, db, bus, watch, last: None, access });
    Ok(stream::unfold(state, |state| async move {
        let mut state = state?;
        loop {
            let woken = {
                let Watching { receiver, access, .. } = &mut state;
                tokio::select! {
                    received = receiver.recv() => Ok(received),
                    open = access_changed(access) => Err(open),
                }
            };
            let received = match woken {
                Ok(received) => received,
                // The connection is gone: its operations are being stopped.
                Err(false) => {
                    state.access = None;
                    continue;
                }
                Err(true) => match state.recheck().await {
                    Recheck::Continue => continue,
                    Recheck::End(error) => return Some((Err(error), None)),
                },
            };
            let Watching { db, bus, watch, last, .. } = &mut state;
            match received {
                Ok(event) if watch.wants(&event) => match watch.read(db, &event.id).await {
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
                    tracing::info!(missed, "a subscriber fell behind the event bus and was dropped");
                    let error = async_graphql::Error::new(format!(
                        "this subscription fell {missed} changes behind and was dropped; subscribe again (and re-read \
                         the current state)"
                    ))
                    .extend_with(|_, ext| ext.set("code", LAGGED));
                    return Some((Err(error), None));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .boxed())
}

/// Completes when the connection's access changes: true; false when the connection is gone.
/// Never without a connection's access.
async fn access_changed(access: &mut Option<LiveAccess>) -> bool {
    match access {
        Some(LiveAccess(receiver)) => receiver.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Marks a request whose every execution gets a fresh loader ([`execute_with_fresh_loaders`]): the
/// operations over WebSocket ([`crate::graphql::with_subscription_data`]).
pub struct LoaderPerExecution;

/// Gives every execution of a request marked [`LoaderPerExecution`] a fresh loader bound to
/// the caller's current access ([`LiveAccess`] when the connection keeps one), in place of
/// the request's: each event of a subscription resolves with its own loader and access (and
/// so sees the rows as they are now), like a request of its own. Called by the schema's one
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
    // The connection's access as last re-checked, when it has one (`None`: the
    // credential is gone, and the fields answer `UNAUTHENTICATED`).
    let access = match ctx.data_opt::<LiveAccess>() {
        Some(LiveAccess(current)) => current.borrow().clone(),
        None => Some(access.clone()),
    };
    let mut data = Data::default();
    if let Some(access) = &access {
        data.insert(crate::graphql::loader_for(db, access.clone()));
    }
    data.insert(RequestAccess(access));
    next.run_with_data(ctx, operation_name, data).await
}
