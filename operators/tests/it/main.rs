//! The operators' integration tests, one binary: `http` against wiremock, `shell` against bash,
//! `kafka_publish` against the real broker, plugins as real processes.
//!   cargo test -p updraft-operators --test it [<module>::]

mod http;
mod kafka_publish;
mod plugins;
mod shell;
mod support;
