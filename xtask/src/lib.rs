//! The commands behind `cargo xtask` (see `main.rs`), as a library so the integration tests can
//! drive them (`bench::cache` on the fixture pipelines).

pub mod backend;
pub mod bench;
pub mod fixtures;
pub mod mini;
pub mod run;
