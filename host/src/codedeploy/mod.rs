//! CodeDeploy on the host: the lifecycle hooks (`hooks.rs`), the checks the resident program
//! makes before a bundle may touch the host (`bundle.rs`, `admission.rs`), and the resident
//! program itself (`resident.rs`).

pub mod admission;
pub mod bundle;
pub mod hooks;
pub mod resident;
