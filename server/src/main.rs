//! The `tessera` command.

fn main() -> std::process::ExitCode {
    tessera_server::cli::main()
}
