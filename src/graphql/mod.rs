//! The GraphQL API: a schema generated from the data model ([`schema`]), read through
//! generic resolvers over [`records::Record`]s, scoped to the caller ([`access`]) and
//! batched by a per-request loader ([`loader`]); writes in [`mutations`], pushed changes in
//! [`subscriptions`], their executions shared by subscribers alike in [`shared_subscriptions`].

pub mod access;
pub mod analytics;
pub mod filter;
pub mod ints;
pub mod lists;
pub mod loader;
pub mod mutations;
pub mod names;
pub mod projection;
pub mod records;
pub mod schema;
pub mod shared_subscriptions;
pub mod subscriptions;
pub mod through;

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;

use crate::auth::{memberships, Viewer};
use crate::db::Db;
use crate::error::AppResult;
use crate::events::EventBus;
use access::Access;
use loader::GraphLoader;
use schema::RequestAccess;

/// The executable schema.
pub type AppSchema = async_graphql::dynamic::Schema;

/// Builds the schema with the default limits.
pub fn build_schema() -> AppSchema {
    build_schema_with(&crate::config::Limits::default())
}

/// The schema's SDL exactly as the server introspects: async-graphql's SDL plus the schema
/// description the server answers to `__schema { description }` (a fixed text of
/// async-graphql's), which its SDL export leaves out. What `iofold-graph schema` prints and
/// `schema.graphql` holds, so a tool that asks for the schema description finds no
/// difference either.
pub async fn schema_file() -> String {
    let schema = build_schema();
    let sdl = schema.sdl();
    let answer = schema.execute("{ __schema { description } }").await.data.into_json().unwrap_or_default();
    match answer["__schema"]["description"].as_str() {
        Some(description) if !description.is_empty() && sdl.contains("\nschema {") => {
            let block = format!("\n\"\"\"\n{}\n\"\"\"\nschema {{", description.replace("\"\"\"", "\\\"\"\""));
            sdl.replacen("\nschema {", &block, 1)
        }
        _ => sdl,
    }
}

/// Builds the schema (once, at start) with the request limits and switches of `limits`
/// (depth, complexity, aliases, introspection: [`crate::server::guard`]), and a fresh loader
/// for each event of a subscription ([`subscriptions::execute_with_fresh_loaders`]).
pub fn build_schema_with(limits: &crate::config::Limits) -> AppSchema {
    crate::server::guard::install(schema::builder(), limits).finish().expect("the generated schema is valid")
}

/// What the caller may see: `None` for an anonymous caller. Looks up the user's
/// workspaces once per request.
pub async fn access_of(db: &Db, viewer: &Viewer) -> AppResult<Option<Arc<Access>>> {
    Ok(match viewer {
        Viewer::Anonymous => None,
        Viewer::Admin => Some(Arc::new(Access::Admin)),
        Viewer::User { user_id } => {
            let (workspaces, roles) = memberships(db, user_id).await?.into_iter().unzip();
            Some(Arc::new(Access::Member { user_id: user_id.clone(), workspaces, roles }))
        }
    })
}

/// [`access_of`] a checked credential: with the memberships its statement read, when it
/// did (a token), without another statement.
pub async fn access_of_credential(db: &Db, credential: crate::auth::Credential) -> AppResult<Option<Arc<Access>>> {
    match (credential.viewer, credential.memberships) {
        (Viewer::User { user_id }, Some(memberships)) => {
            let (workspaces, roles) = memberships.into_iter().unzip();
            Ok(Some(Arc::new(Access::Member { user_id, workspaces, roles })))
        }
        (viewer, _) => access_of(db, &viewer).await,
    }
}

/// Adds what the resolvers need to a request: the database, the caller's access and a
/// fresh loader bound to that access.
pub fn with_request_data(
    request: async_graphql::Request,
    db: &Db,
    access: Option<Arc<Access>>,
) -> async_graphql::Request {
    let mut request = request.data(db.clone()).data(RequestAccess(access.clone()));
    if let Some(access) = access {
        request = request.data(loader_for(db, access));
    }
    request
}

/// Adds what the resolvers of an operation over WebSocket need: the database (its reads
/// following the event bus's newest commit position, [`Db::following`]), the caller's
/// access, a loader, and the event bus; each execution of a subscription (each event) gets a
/// fresh loader ([`subscriptions::execute_with_fresh_loaders`]).
pub fn with_subscription_data(
    request: async_graphql::Request,
    db: &Db,
    access: Arc<Access>,
    events: &EventBus,
) -> async_graphql::Request {
    // Its reads (a subscription's re-reads too) never go back before the newest change the
    // bus announced: on a read replica, the change an event announces is there.
    let db = db.following(events.position());
    with_request_data(request, &db, Some(access)).data(events.clone()).data(subscriptions::LoaderPerExecution)
}

/// A new loader of root lookups bound to the caller's access.
pub fn loader_for(db: &Db, access: Arc<Access>) -> DataLoader<GraphLoader> {
    // Batches run on tasks of their own, inside the request's span (its request id). They
    // gather the keys of 50 µs (async-graphql's default, 1 ms, was most of a one-trace
    // lookup's latency): the root fields of a request ask theirs within one poll.
    let spawn = |batch| tokio::spawn(tracing::Instrument::in_current_span(batch));
    DataLoader::new(GraphLoader { db: db.clone(), access }, spawn).delay(std::time::Duration::from_micros(50))
}
