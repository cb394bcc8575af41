//! `hermes`: see the library.

fn main() -> std::process::ExitCode {
    hermes::main()
}
