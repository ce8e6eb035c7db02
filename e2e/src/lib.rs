//! End-to-end tests live in `tests/it/` (one binary); this crate has no code of its own.
