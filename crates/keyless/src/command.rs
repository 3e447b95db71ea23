//! One module per command group.

pub(crate) mod access;
pub(crate) mod account;
pub(crate) mod acr;
pub(crate) mod ad;
pub(crate) mod admin;
pub(crate) mod agent;
pub(crate) mod configure;
pub(crate) mod demo;
pub(crate) mod env;
pub(crate) mod group;
pub(crate) mod hosts;
pub(crate) mod identity;
pub(crate) mod keyvault;
pub(crate) mod ml;
pub(crate) mod monitor;
pub(crate) mod role;
pub(crate) mod serve;
pub(crate) mod shim;
pub(crate) mod storage;
