//! The pipeline's mechanics, kept apart from the commands in `main.rs` so they can be tested
//! and benchmarked on their own.

pub mod binaries;
pub mod branch_config;
pub mod components;
pub mod elf;
pub mod git;
pub mod inputs;
pub mod manifest;
pub mod package;
pub mod store;

/// Lowercase hex, the form every digest takes in file names, keys and manifests.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
