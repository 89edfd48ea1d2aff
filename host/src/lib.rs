//! The host program: what every release ships to its hosts as `bin/xtask`, where CodeDeploy runs
//! it as root. It holds the host commands (install, rollback, status, doctor, hook, verify) and
//! what they need, nothing else; the tooling (`cargo xtask`, in `xtask/`) reuses them as a
//! library, so `cargo xtask install` on a laptop is the same code.

pub mod codedeploy;
pub mod commands;
pub mod database;
pub mod environments;
pub mod kit;
pub mod release;
pub mod secrets;
pub mod site;
pub mod tls;

/// How both programs end: the error's whole chain on stderr, and a failing exit code.
pub fn exit(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
