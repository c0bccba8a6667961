//! The real worker entry point, built inside the benches package so that benchmarks
//! running workers as processes (on simulated hosts) find it by path.

fn main() -> anyhow::Result<()> {
    rushes_worker::main_entry()
}
