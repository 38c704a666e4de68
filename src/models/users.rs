//! Users and workspaces: row models (`Row`, `NewRow`) and the enums of their columns.

use super::prelude::*;

db_enum! {
    /// `workspace_members.role`.
    WorkspaceMemberRole {
        Owner = "owner",
        Admin = "admin",
        Member = "member",
        Viewer = "viewer",
    }
}

rows! {
    /// A person who uses iofold. Visible to themself and to the users who share a workspace with them.
    user => users {
        scope {
        }
        /// Unique, validated (`local@domain.tld`), stored lower-case.
        email: String,
        /// Name.
        name: Option<String>,
    }
}

rows! {
    /// The tenant: every other row belongs to exactly one workspace. Who may act in it is decided by its members.
    workspace => workspaces {
        scope {
        }
        /// References `users` (set to null when it is deleted). The creator; membership decides access.
        user_id: Option<String>,
        /// Name.
        name: String,
    }
}

rows! {
    /// Who may act in a workspace, and with which role.
    workspace_member => workspace_members {
        scope {
            /// References `workspaces` (deleted with it).
            workspace_id: String,
        }
        /// References `users` (deleted with it).
        user_id: String,
        /// `owner` | `admin` | `member` | `viewer`, default `member`.
        role: WorkspaceMemberRole,
    }
}

rows! {
    /// An API token of a user (scope: that user). Only the SHA-256 hash of the secret is stored; the secret is shown once.
    api_token => api_tokens {
        scope {
            /// References `users` (deleted with it).
            user_id: String,
        }
        /// Label.
        name: String,
        /// Unique; SHA-256 of the secret; the secret is shown once.
        token_hash: String,
        /// Last used at.
        last_used_at: Option<Timestamp>,
        /// Expires at.
        expires_at: Option<Timestamp>,
        /// Revoked at.
        revoked_at: Option<Timestamp>,
    }
}
