//! `rushesctl`: see [`rushes_control::ctl`].

fn main() -> std::process::ExitCode {
    rushes_control::ctl::main_entry()
}
