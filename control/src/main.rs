//! `rushes-control`: `migrate` or `serve` (see `rushes_control::main_entry`).

fn main() -> anyhow::Result<()> {
    rushes_control::main_entry()
}
