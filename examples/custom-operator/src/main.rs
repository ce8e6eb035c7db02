//! `my-updraft`: the `updraft` command with one more operator, `checksum`. Every command is
//! there (`dags test`, `scheduler`, `standalone`...), and DAG files may name `checksum` like a
//! built-in operator.

mod checksum;

fn main() -> std::process::ExitCode {
    updraft::App::default()
        .operator::<checksum::ChecksumOperator>()
        .run()
}
