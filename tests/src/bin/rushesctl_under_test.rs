//! The real `rushesctl` entry point, built inside the tests package so that tests can
//! run it by path against a real control plane.

fn main() -> std::process::ExitCode {
    rushes_control::ctl::main_entry()
}
