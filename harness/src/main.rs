//! The `gauntlet` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    gauntlet::cli::main()
}
