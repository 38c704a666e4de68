//! iofold-graph: a GraphQL API server for the data of the iofold AI-agent evaluation
//! platform, on an embedded SQLite file or on PostgreSQL.

pub mod catalog;
pub mod db;
pub mod models;
pub mod schema;
