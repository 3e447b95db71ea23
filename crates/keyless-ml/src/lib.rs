//! Machine-learning resources of keyless: the `az ml` YAML files, datastores and
//! their credentials, the managed identities of workspaces and computes, data
//! URIs, jobs and code snapshots, and the compute backends that run jobs.
//! Everything but the backends is pure: the server stores and serves what this
//! crate validates.

pub mod backend;
pub mod datastore;
pub mod identity;
pub mod job;
pub mod names;
pub mod runner;
pub mod snapshot;
pub mod uri;
pub mod yaml;
