//! Machine-learning resources of keyless: workspaces, computes, datastores, data
//! assets, `azureml://` URI resolution, jobs and the runner.
//!
//! Empty for now: the crate exists so that the workspace layout is the final one.
//! It will depend on `keyless-core`, `keyless-store` and `keyless-auth`, never on
//! the HTTP server.
