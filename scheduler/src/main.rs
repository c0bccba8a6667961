//! `rushes-scheduler`: see `rushes_scheduler::run`.

fn main() -> anyhow::Result<()> {
    rushes_scheduler::main_entry()
}
