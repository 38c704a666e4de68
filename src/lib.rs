//! iofold-graph: a GraphQL API server for the data of the iofold AI-agent evaluation
//! platform, on an embedded SQLite file or on PostgreSQL.
//!
//! Layout: [`config`] (environment and flags), [`db`] (the two-backend pool, SQL types,
//! migrations), [`schema`] (Diesel tables), [`models`] (row models), [`catalog`] (the data
//! model as data), [`auth`], [`graphql`], [`events`] (changes pushed to subscriptions),
//! [`server`] (HTTP and WebSocket), [`seed`], [`cli`].

pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod graphql;
pub mod models;
pub mod observability;
pub mod ops;
pub mod schema;
pub mod seed;
pub mod server;
pub mod sql;
pub mod validate;
