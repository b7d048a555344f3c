//! Micro-benchmarks live in `benches/`; run them with `cargo bench -p lb-bench`.
