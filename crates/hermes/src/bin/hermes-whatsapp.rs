//! `hermes-whatsapp`: hermes under a name that does not shadow Hermes Agent's own `hermes`
//! CLI, for a machine that runs both (the same program; it names its commands by this name).

fn main() -> std::process::ExitCode {
    hermes::main()
}
