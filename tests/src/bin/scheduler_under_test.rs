//! The real scheduler entry point, built inside the tests package so that process-level
//! tests (leader SIGKILL) can spawn it by path.

fn main() -> anyhow::Result<()> {
    rushes_scheduler::main_entry()
}
