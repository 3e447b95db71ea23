//! Machine-learning resources of keyless: the `az ml` YAML files, datastores and
//! their credentials, the managed identities of workspaces and computes, and data
//! URIs. Pure: no I/O; the server stores and serves what this crate validates.

pub mod datastore;
pub mod identity;
pub mod names;
pub mod uri;
pub mod yaml;
