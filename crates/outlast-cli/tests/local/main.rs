//! The `outlast` binary end to end on local-folder providers, one test binary (one link) for
//! all: each module is one face of it.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod ctrl_c;
mod identity;
mod s3_gateway;
mod site;
mod survive;
