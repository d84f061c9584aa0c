//! The `shutter` command line; everything lives in [`shutter_snapshot::cli`].

fn main() -> std::process::ExitCode {
    shutter_snapshot::cli::main()
}
