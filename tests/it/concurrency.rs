//! Concurrent writers: SQLite must not fail with "database is locked".

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use iofold_graph::db::sql_types::Timestamp;
use iofold_graph::db::DbError;
use iofold_graph::models::{user, workspace};
use iofold_graph::schema::{users, workspaces};

use crate::both_backends;
use crate::support::db::TestDb;

both_backends! {
    async fn concurrent_write_transactions_all_succeed(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let db = test_db.db.clone();
        let now = Timestamp::now();
        let owner = user::NewRow { id: user::new_id(), email: "owner@example.com".into(), name: None, created_at: now, updated_at: now };
        let owner_id = owner.id.clone();
        async { Ok::<_, DbError>(iofold_graph::with_conn!(&db, |conn| diesel::insert_into(users::table).values(&owner).execute(conn).await?)) }
            .await
            .unwrap();
        // 32 clients, each 10 transactions that read, then write (the pattern that fails
        // with SQLITE_BUSY under deferred transactions).
        let mut tasks = Vec::new();
        for client in 0..32 {
            let db = db.clone();
            let owner_id = owner_id.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..10 {
                    let owner_id = owner_id.clone();
                    let result: Result<(), DbError> = async {
                        iofold_graph::with_tx!(&db, async |conn| {
                            let existing: i64 = workspaces::table.count().get_result(conn).await?;
                            let now = Timestamp::now();
                            diesel::insert_into(workspaces::table)
                                .values(workspace::NewRow {
                                    id: workspace::new_id(),
                                    user_id: Some(owner_id.clone()),
                                    name: format!("client {client} write {i} after {existing}"),
                                    created_at: now,
                                    updated_at: now,
                                })
                                .execute(conn)
                                .await?;
                            Ok::<_, diesel::result::Error>(())
                        })?;
                        Ok(())
                    }
                    .await;
                    result.unwrap_or_else(|e| panic!("client {client} write {i}: {e}"));
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(iofold_graph::db::count_rows(&db, "workspaces").await.unwrap(), 320);
    }
}
