//! The pipeline's mechanics, kept apart from the commands in `main.rs` so they can be tested
//! and benchmarked on their own.

pub mod binaries;
pub mod branch_config;
pub mod checkout;
pub mod components;
pub mod git;
pub mod inputs;
pub mod migrations;
pub mod package;
pub mod rollout;
pub mod signing;
pub mod tidy;
