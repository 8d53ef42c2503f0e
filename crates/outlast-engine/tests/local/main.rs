//! Engine tests on local-folder providers, one binary (one link) for all: each module is one
//! concern. The same engine runs against real servers in the CLI's end-to-end tests.

mod common;

mod composite;
mod drill;
mod evacuate;
mod faults;
mod fixture_store;
mod gc_elsewhere;
mod health;
mod identity;
mod lies;
mod model;
mod recover;
mod repair;
mod scrub;
mod stop;
mod store;
mod unopened;
