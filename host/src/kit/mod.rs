//! Tools with no HitSave knowledge: processes (and /proc), HTTP, Docker Engine's API, the terminal, digests, ELF, compose,
//! private files, randomness, time, KEY=VALUE files, closed sets of words and the object store.

pub mod choice;
pub mod cloudwatch_logs;
pub mod compose;
pub mod digest;
pub mod docker;
pub mod elf;
pub mod engine;
pub mod env_file;
pub mod files;
pub mod http;
pub mod process;
pub mod procfs;
pub mod random;
pub mod store;
pub mod time;
pub mod ui;
pub mod webhook;
