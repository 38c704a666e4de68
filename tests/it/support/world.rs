//! Two workspaces with one row in every table each, for tests of tenancy and of every
//! table's fields and mutations.

use std::collections::HashMap;

use iofold_graph::db::Backend;

use crate::support::app::TestApp;
use crate::support::fixtures::Fixtures;

/// Two workspaces A and B with one row in every table each (ids by table), their owners'
/// tokens, and a viewer of A.
pub struct World {
    pub app: TestApp,
    pub fx: Fixtures,
    pub a: HashMap<&'static str, String>,
    pub b: HashMap<&'static str, String>,
    pub owner_a: String,
    pub token_a: String,
    pub token_b: String,
    /// The token of a viewer of workspace A.
    pub viewer_a: String,
}

/// A fresh [`World`] on `backend`.
pub async fn world(backend: Backend) -> World {
    let app = TestApp::new(backend).await;
    let fx = Fixtures::new(&app.state.db);
    let (ws_a, owner_a) = fx.workspace_with_owner().await;
    let (ws_b, owner_b) = fx.workspace_with_owner().await;
    let a = fx.one_of_each(&ws_a).await;
    let b = fx.one_of_each(&ws_b).await;
    let viewer = fx.insert("users", "", &[]).await;
    fx.insert("workspace_members", &ws_a, &[("user_id", (&viewer).into()), ("role", "viewer".into())]).await;
    let token_a = fx.token_for(&owner_a).await;
    let token_b = fx.token_for(&owner_b).await;
    let viewer_a = fx.token_for(&viewer).await;
    World { app, fx, a, b, owner_a, token_a, token_b, viewer_a }
}
