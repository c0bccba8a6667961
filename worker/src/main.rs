//! `rushes-worker`: see `rushes_worker::run`.

/// mimalloc rather than glibc's allocator: candle allocates a fresh buffer for every
/// tensor, and glibc hands large ones back to the kernel on free, so each Whisper layer
/// paid for page faults and zeroing again (about a tenth of a transcription's time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    rushes_worker::main_entry()
}
