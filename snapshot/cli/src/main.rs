//! The `shutter` command line; everything lives in the [`shutter_cli`] library.

fn main() -> std::process::ExitCode {
    shutter_cli::main()
}
