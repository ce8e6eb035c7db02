//! The web UI and REST API.
