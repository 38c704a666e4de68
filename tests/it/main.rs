//! The integration tests: one binary; every database test runs on SQLite and on PostgreSQL
//! (`<test>::sqlite`, `<test>::postgres`).

mod support;

mod cli;
mod clients;
mod concurrency;
mod data_model;
mod design_docs;
mod graph;
mod hardening;
mod maintenance;
mod mutations;
mod ops;
mod reads;
mod replicas;
mod security_input;
mod security_ws;
mod server;
mod subscriptions;
mod writes;
