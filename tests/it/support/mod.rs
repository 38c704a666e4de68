//! Shared test support: fresh databases on both backends, and a client that drives the
//! HTTP router the way a client would, without a socket.

pub mod app;
pub mod db;
pub mod fixtures;
