//! Benchmarks of Rushes live in `benches/` (run with `cargo bench -p rushes-benches`);
//! each prints a table and its ratio to a reference measured in the same run.
