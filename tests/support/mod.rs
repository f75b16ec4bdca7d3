//! Reference code shared by integration tests (and, by path, benchmarks).

pub mod plain_fit;
