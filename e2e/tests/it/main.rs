//! End-to-end tests, one binary: the reference pipeline across real processes, and the
//! consistency of `docker-compose.yaml`.
//!   cargo test -p e2e --test it [<module>::]

mod docker_compose;
mod pipeline;
