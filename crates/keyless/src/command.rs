//! One module per command group.

pub(crate) mod account;
pub(crate) mod ad;
pub(crate) mod admin;
pub(crate) mod env;
pub(crate) mod identity;
pub(crate) mod serve;
pub(crate) mod shim;
