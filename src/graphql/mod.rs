//! The GraphQL schema: built once at start, executed per request with the caller
//! ([`Viewer`]) in the request's data.

mod scalars;

use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema, ID};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::auth::{member_workspaces, Viewer};
use crate::db::sql_types::Timestamp;
use crate::db::Db;
use crate::error::AppResult;
use crate::models::{user, workspace};
use crate::schema::{users, workspaces};
use crate::with_conn;

/// The executable schema.
pub type AppSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// Builds the schema. The database is per-request data too (so one schema value serves any
/// pool), added by the HTTP layer.
pub fn build_schema() -> AppSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription).finish()
}

/// The caller and the database of the current request.
fn request<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<(&'a Viewer, &'a Db)> {
    Ok((ctx.data::<Viewer>()?, ctx.data::<Db>()?))
}

/// The root query.
pub struct Query;

#[Object]
impl Query {
    /// The authenticated user; null under the admin secret.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<user::Row>> {
        let (viewer, db) = request(ctx)?;
        viewer.require_authenticated()?;
        match viewer.user_id() {
            Some(user_id) => Ok(find_user(db, user_id).await?),
            None => Ok(None),
        }
    }

    /// A workspace by id: null when it does not exist or the caller is not a member.
    async fn workspace(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<workspace::Row>> {
        let (viewer, db) = request(ctx)?;
        Ok(visible_workspaces(viewer, db, Some(id.as_str()))
            .await?
            .into_iter()
            .next())
    }

    /// The caller's workspaces (every workspace under the admin secret), newest first.
    async fn workspaces(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<workspace::Row>> {
        let (viewer, db) = request(ctx)?;
        Ok(visible_workspaces(viewer, db, None).await?)
    }
}

async fn find_user(db: &Db, user_id: &str) -> AppResult<Option<user::Row>> {
    Ok(with_conn!(db, |conn| {
        users::table
            .find(user_id)
            .select(user::Row::as_select())
            .first(conn)
            .await
            .optional()?
    }))
}

/// The workspaces the viewer may see, optionally only the one with `id`.
async fn visible_workspaces(
    viewer: &Viewer,
    db: &Db,
    id: Option<&str>,
) -> AppResult<Vec<workspace::Row>> {
    viewer.require_authenticated()?;
    let member_of = match viewer.user_id() {
        Some(user_id) => Some(member_workspaces(db, user_id).await?),
        None => None,
    };
    Ok(with_conn!(db, |conn| {
        let mut query = workspaces::table
            .select(workspace::Row::as_select())
            .into_boxed();
        if let Some(id) = id {
            query = query.filter(workspaces::id.eq(id));
        }
        if let Some(member_of) = &member_of {
            query = query.filter(workspaces::id.eq_any(member_of));
        }
        query
            .order((workspaces::created_at.desc(), workspaces::id.desc()))
            .load(conn)
            .await?
    }))
}

/// A person who uses iofold. Visible to themself and to the users who share a workspace with
/// them.
#[Object(name = "User")]
impl user::Row {
    /// The user's id (`user_…`).
    async fn id(&self) -> ID {
        ID(self.id.clone())
    }
    /// The email address, lower-case.
    async fn email(&self) -> &str {
        &self.email
    }
    /// The display name.
    async fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// When the row was created; never changes.
    async fn created_at(&self) -> Timestamp {
        self.created_at
    }
    /// When the row last changed; stamped by the server.
    async fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
}

/// The tenant: every other row belongs to exactly one workspace. Who may act in it is decided
/// by its members.
#[Object(name = "Workspace")]
impl workspace::Row {
    /// The workspace's id (`workspace_…`).
    async fn id(&self) -> ID {
        ID(self.id.clone())
    }
    /// The user who created it (membership decides access).
    async fn user_id(&self) -> Option<ID> {
        self.user_id.clone().map(ID)
    }
    /// The workspace's name.
    async fn name(&self) -> &str {
        &self.name
    }
    /// When the row was created; never changes.
    async fn created_at(&self) -> Timestamp {
        self.created_at
    }
    /// When the row last changed; stamped by the server.
    async fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
}
