//! `rushes-worker`: see `rushes_worker::run`.

fn main() -> anyhow::Result<()> {
    rushes_worker::main_entry()
}
