//! The launcher as a program of its own, for hosts that cannot serve as their own launcher.

fn main() {
    trellis_sandbox::run_launcher_if_requested();
    eprintln!(
        "trellis-sandbox is started by a Trellis host, with `{}` as its first argument",
        trellis_sandbox::LAUNCHER_ARG
    );
    std::process::exit(2);
}
