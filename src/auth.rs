//! Who is asking: a user by API token, the server admin by secret, or nobody.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tracing::Instrument;

use crate::crypto::{constant_time_eq, token_hash};
use crate::db::sql_types::Timestamp;
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::models::{api_token, WorkspaceMemberRole};
use crate::schema::{api_tokens, workspace_members};
use crate::with_conn;

/// The header that carries the admin secret.
pub const ADMIN_SECRET_HEADER: &str = "x-iofold-admin-secret";

/// `last_used_at` is written at most this often per token, so reads stay reads.
pub const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// No credentials: only introspection is open.
    Anonymous,
    /// A user, by API token.
    User {
        /// The user's id.
        user_id: String,
    },
    /// The server admin secret: acts on every workspace.
    Admin,
}

impl Viewer {
    /// The user's id, if the caller is a user (the admin has none).
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Self::User { user_id } => Some(user_id),
            _ => None,
        }
    }
}

/// A checked credential: who it is, and when it stops working by itself (a token's
/// `expires_at`; the admin secret and tokens without expiry: never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The caller.
    pub viewer: Viewer,
    /// When the token expires, if it does.
    pub expires_at: Option<Timestamp>,
    /// A token's user's workspaces and roles, read by the same statement as the token
    /// (`None` for the admin and anonymous callers).
    pub memberships: Option<Vec<(String, WorkspaceMemberRole)>>,
}

/// Resolves the credentials of a request. No credentials: [`Viewer::Anonymous`]. A wrong admin
/// secret, or an unknown, expired or revoked token: `UNAUTHENTICATED`.
pub async fn authenticate(
    db: &Db,
    admin_secret: Option<&str>,
    sent_secret: Option<&str>,
    authorization: Option<&str>,
) -> AppResult<Viewer> {
    Ok(check_credential(db, admin_secret, sent_secret, authorization).await?.viewer)
}

/// [`authenticate`], with the credential's expiry: the one check of HTTP requests and of
/// WebSocket connections (at `connection_init`, at every operation and while subscriptions
/// run). One statement for a token (the token and its user's memberships, joined), none for
/// the admin secret.
pub async fn check_credential(
    db: &Db,
    admin_secret: Option<&str>,
    sent_secret: Option<&str>,
    authorization: Option<&str>,
) -> AppResult<Credential> {
    let never = |viewer| Credential { viewer, expires_at: None, memberships: None };
    if let Some(sent) = sent_secret {
        return match admin_secret {
            Some(expected) if constant_time_eq(sent.as_bytes(), expected.as_bytes()) => Ok(never(Viewer::Admin)),
            _ => Err(AppError::Unauthenticated("invalid admin secret".into())),
        };
    }
    let Some(authorization) = authorization else {
        return Ok(never(Viewer::Anonymous));
    };
    let token = authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::Unauthenticated("the Authorization header must be `Bearer <token>`".into()))?;
    let hash = token_hash(token);
    type Membership = Option<(String, WorkspaceMemberRole)>;
    let rows: Vec<(api_token::Row, Membership)> = with_conn!(db, |conn| {
        api_tokens::table
            .left_join(workspace_members::table.on(workspace_members::user_id.eq(api_tokens::user_id)))
            .filter(api_tokens::token_hash.eq(&hash))
            .select((
                api_token::Row::as_select(),
                (workspace_members::workspace_id, workspace_members::role).nullable(),
            ))
            .order(workspace_members::workspace_id)
            .load(conn)
            .await?
    });
    let now = Timestamp::now();
    let invalid = || AppError::Unauthenticated("invalid, expired or revoked token".into());
    let mut rows = rows.into_iter();
    let (token, first) = rows.next().ok_or_else(invalid)?;
    let memberships: Vec<(String, WorkspaceMemberRole)> =
        first.into_iter().chain(rows.filter_map(|(_, m)| m)).collect();
    if token.revoked_at.is_some() || token.expires_at.is_some_and(|at| at <= now) {
        return Err(invalid());
    }
    let stale = token
        .last_used_at
        .is_none_or(|at| (now.as_datetime() - at.as_datetime()).to_std().unwrap_or_default() >= LAST_USED_GRANULARITY);
    if stale {
        let (db, token_id) = (db.clone(), token.id.clone());
        tokio::spawn(
            async move {
                if let Err(error) = touch_token(&db, &token_id, now).await {
                    tracing::warn!(?error, "could not record the token's last use");
                }
            }
            .in_current_span(),
        );
    }
    Ok(Credential {
        viewer: Viewer::User { user_id: token.user_id },
        expires_at: token.expires_at,
        memberships: Some(memberships),
    })
}

async fn touch_token(db: &Db, token_id: &str, now: Timestamp) -> AppResult<()> {
    with_conn!(db, |conn| {
        diesel::update(api_tokens::table.find(token_id)).set(api_tokens::last_used_at.eq(now)).execute(conn).await?
    });
    Ok(())
}

/// The workspaces where the user is a member, with the user's role in each.
pub async fn memberships(db: &Db, user_id: &str) -> AppResult<Vec<(String, WorkspaceMemberRole)>> {
    Ok(with_conn!(db, |conn| {
        workspace_members::table
            .filter(workspace_members::user_id.eq(user_id))
            .select((workspace_members::workspace_id, workspace_members::role))
            .order(workspace_members::workspace_id)
            .load(conn)
            .await?
    }))
}
