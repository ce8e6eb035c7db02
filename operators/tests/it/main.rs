//! The operators' integration tests, one binary: `http` against wiremock, `shell` against bash,
//! `kafka_publish` against the real broker, `sql` and `cql` against the real PostgreSQL and
//! Cassandra, plugins as real processes.
//!   cargo test -p updraft-operators --test it [<module>::]

mod cql;
mod http;
mod kafka_publish;
mod plugin_protocol_fuzz;
mod plugins;
mod shell;
mod sql;
mod support;
