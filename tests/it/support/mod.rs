//! Shared test support: fresh databases on both backends, and a client that drives the
//! HTTP router the way a client would, without a socket; and a real server process with a
//! minimal HTTP client, for the tests that kill or measure the process.

pub mod app;
pub mod cli;
pub mod db;
pub mod fixtures;
pub mod http;
pub mod world;
pub mod ws;
