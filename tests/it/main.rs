//! The integration tests: one binary, every test on SQLite and on PostgreSQL.

mod support;

mod data_model;
