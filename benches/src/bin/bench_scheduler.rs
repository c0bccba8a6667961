//! The real scheduler entry point, built inside the benches package so that benchmarks
//! running schedulers as processes (to kill the leader) find it by path.

fn main() -> anyhow::Result<()> {
    rushes_scheduler::main_entry()
}
