//! This host and the stack it runs: the install root (`host.rs`), its lock, the session every
//! change runs in, settings (host.env, release.env) and history, the apps and services, the compose stack, the blue/green swap, nginx, CPU weights
//! and the secret and certificate files. Every feature stands on it; it knows none of them.

pub mod app;
pub mod cpu;
pub mod history;
pub mod host;
pub mod lock;
pub mod nginx;
pub mod notify;
pub mod placement;
pub mod release_env;
pub mod rotations;
pub mod secret_files;
pub mod session;
pub mod settings;
pub mod stack;
pub mod swap;
pub mod tls_files;
