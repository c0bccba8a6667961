//! The real worker entry point, built inside the tests package so that process-level
//! tests (SIGKILL, SIGTERM) can spawn it by path.

fn main() -> anyhow::Result<()> {
    rushes_worker::main_entry()
}
