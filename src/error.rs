//! The one error type of the API, with stable codes (`extensions.code`).
//!
//! Database errors map here in one place: a missing row is `NOT_FOUND`, a unique violation
//! `CONFLICT` naming the key, a foreign-key or check violation `BAD_USER_INPUT`; anything
//! else is logged in full and reaches the client only as `INTERNAL_SERVER_ERROR`.

use async_graphql::ErrorExtensions;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::db::DbError;

/// An error a client may see.
///
/// It deliberately does not implement `Display`: async-graphql converts any `Display` type
/// into an error without a code, so `?` in a resolver must go through the `From` below,
/// which sets `extensions.code` (and keeps internal details out).
#[derive(Debug, Clone)]
pub enum AppError {
    /// No, unknown, expired or revoked token.
    Unauthenticated(String),
    /// The caller's role may not do this.
    Forbidden(String),
    /// No such row, or a row of another workspace.
    NotFound(String),
    /// An invalid argument; `field` names it.
    BadUserInput {
        /// What is wrong.
        message: String,
        /// The argument or input field at fault.
        field: Option<String>,
    },
    /// A unique key already holds the value.
    Conflict {
        /// What is wrong.
        message: String,
        /// The unique key.
        key: String,
    },
    /// The request deadline or a statement timeout passed (or the database stayed busy).
    Timeout(String),
    /// A write transaction lost a race with a concurrent one (PostgreSQL's deadlock or
    /// serialization failure): the transaction is retried; a client sees it, as `TIMEOUT`,
    /// only when the retries run out.
    Busy(String),
    /// Anything else: logged, never sent.
    Internal(String),
}

impl AppError {
    /// The stable code sent as `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::BadUserInput { .. } => "BAD_USER_INPUT",
            Self::Conflict { .. } => "CONFLICT",
            Self::Timeout(_) | Self::Busy(_) => "TIMEOUT",
            Self::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// The message a client sees (never the detail of an internal error).
    pub fn message(&self) -> &str {
        match self {
            Self::Unauthenticated(m) | Self::Forbidden(m) | Self::NotFound(m) | Self::Timeout(m) => m,
            Self::Busy(_) => "the database stayed busy with concurrent changes to the same rows; try again",
            Self::BadUserInput { message, .. } | Self::Conflict { message, .. } => message,
            Self::Internal(_) => "internal server error",
        }
    }

    /// `BAD_USER_INPUT` naming a field.
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadUserInput { message: message.into(), field: Some(field.into()) }
    }

    /// `UNAUTHENTICATED` with the standard message.
    pub fn unauthenticated() -> Self {
        Self::Unauthenticated("authentication required: send `Authorization: Bearer <token>`".into())
    }

    /// An internal error: the detail is logged now (inside the request's span, so with its
    /// request id) and never sent to the client, who gets the request id instead.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let detail = detail.to_string();
        tracing::error!(error = %detail, "internal error");
        Self::Internal(detail)
    }
}

impl From<DieselError> for AppError {
    fn from(error: DieselError) -> Self {
        match &error {
            DieselError::NotFound => Self::NotFound("not found".into()),
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                let key = info
                    .constraint_name()
                    .map(str::to_owned)
                    .unwrap_or_else(|| unique_key_from_message(info.message()));
                Self::Conflict { message: format!("a row with the same `{key}` already exists"), key }
            }
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => Self::BadUserInput {
                message: "a referenced row does not exist".into(),
                field: info.column_name().map(str::to_owned),
            },
            DieselError::DatabaseError(DatabaseErrorKind::CheckViolation, info) => Self::BadUserInput {
                message: "a value is out of its allowed range or set".into(),
                field: info.constraint_name().map(str::to_owned),
            },
            DieselError::DatabaseError(DatabaseErrorKind::NotNullViolation, info) => Self::BadUserInput {
                message: "a required value is missing".into(),
                field: info.column_name().map(str::to_owned),
            },
            DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, info) => {
                Self::Busy(info.message().to_owned())
            }
            DieselError::DatabaseError(_, info) if info.message().contains("deadlock detected") => {
                Self::Busy(info.message().to_owned())
            }
            DieselError::DatabaseError(_, info) if is_timeout(info.message()) => {
                tracing::warn!(error = %info.message(), "statement timed out");
                Self::Timeout("a database statement took too long and was cancelled".into())
            }
            _ => Self::internal(error),
        }
    }
}

/// PostgreSQL's `statement_timeout` (SQLSTATE 57014, "canceling statement due to statement
/// timeout"), its lock timeout, and SQLite's busy timeout ("database is locked").
fn is_timeout(message: &str) -> bool {
    message.contains("canceling statement due to statement timeout")
        || message.contains("canceling statement due to lock timeout")
        || message.contains("database is locked")
}

/// SQLite names the columns, not the constraint: `UNIQUE constraint failed: t.a, t.b`
/// becomes `t_a_b_key`, the constraint's name on both backends.
fn unique_key_from_message(message: &str) -> String {
    let Some(columns) = message.split("UNIQUE constraint failed:").nth(1) else {
        return "unique".into();
    };
    let mut table = None;
    let mut names = Vec::new();
    for qualified in columns.split(',') {
        let (t, c) = qualified.trim().split_once('.').unwrap_or(("", qualified.trim()));
        table.get_or_insert(t.to_owned());
        names.push(c.to_owned());
    }
    format!("{}_{}_key", table.unwrap_or_default(), names.join("_"))
}

impl From<DbError> for AppError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Query(e) => e.into(),
            DbError::Pool(e) => Self::internal(format!("database unavailable: {e}")),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for AppError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::internal(format!("database unavailable: {error}"))
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(error: AppError) -> Self {
        async_graphql::Error::new(error.message()).extend_with(|_, ext| {
            ext.set("code", error.code());
            match &error {
                AppError::BadUserInput { field: Some(field), .. } => ext.set("field", field.as_str()),
                AppError::Conflict { key, .. } => ext.set("key", key.as_str()),
                _ => {}
            }
        })
    }
}

/// The result type of resolvers.
pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_unique_messages_name_the_key() {
        assert_eq!(
            unique_key_from_message("UNIQUE constraint failed: traces.workspace_id, traces.source, traces.trace_id"),
            "traces_workspace_id_source_trace_id_key"
        );
        assert_eq!(unique_key_from_message("UNIQUE constraint failed: users.email"), "users_email_key");
    }

    #[test]
    fn timeouts_have_their_code() {
        let info = Box::new("canceling statement due to statement timeout".to_owned());
        let error: AppError = DieselError::DatabaseError(DatabaseErrorKind::Unknown, info).into();
        assert_eq!(error.code(), "TIMEOUT");
        assert!(!error.message().contains("canceling"));
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let error: async_graphql::Error = AppError::internal("SELECT secret FROM x").into();
        assert_eq!(error.message, "internal server error");
        let ext = format!("{:?}", error.extensions);
        assert!(ext.contains("INTERNAL_SERVER_ERROR") && !ext.contains("secret"));
    }
}
