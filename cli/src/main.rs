//! The `updraft` binary: the built-in operators and the plugins folder's.

fn main() -> std::process::ExitCode {
    updraft::App::default().run()
}
