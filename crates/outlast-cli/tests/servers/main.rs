//! The `outlast` binary on the real servers of `scripts/servers.sh`. Every test here is ignored
//! by a plain `cargo test`: they stop, kill and restart servers, so `scripts/test.sh` runs them
//! alone, one at a time (`cargo test --test servers -- --ignored --test-threads=1`).

#[path = "../common/mod.rs"]
mod common;
mod kit;

mod e2e;
mod gateway;
mod survive;
