//! The web crate's integration tests, one binary: the REST API, authentication, bad input and the
//! pages through the router; the browser and the Airflow Python client against a real
//! `updraft standalone` (see those modules for what they need); page timings at scale (ignored).
//!   cargo test -p updraft-web --test it [<module>::]

mod airflow_client;
mod api;
mod api_fuzz;
mod audit_log;
mod auth;
mod bad_input;
mod browse;
mod browser;
mod common;
mod grid;
mod live;
mod perf;
mod secrets_api;
mod streams;
mod ui;
mod ui_admin;
