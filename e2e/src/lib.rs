//! End-to-end tests live in `tests/it/` (one binary), and the chaos suite in `examples/chaos/`
//! (run by `scripts/chaos`); this crate has no code of its own.
