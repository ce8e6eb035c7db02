//! End-to-end tests, one binary: the reference pipeline across real processes, the consistency
//! of `docker-compose.yaml`, and the stream worker reading connections the orchestrator stored.
//!   cargo test -p e2e --test it [<module>::]

mod docker_compose;
mod pipeline;
mod stream_connections;
