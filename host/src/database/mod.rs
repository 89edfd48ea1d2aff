//! The stack's PostgreSQL: psql with the stack's password (`psql.rs`), the server a backup or
//! a restore talks to (`server.rs`), backups (`backup.rs`), their drill (`drill.rs`) and
//! retention (`retention.rs`), and restores (`restore.rs`).

pub mod archive;
pub mod backup;
pub mod drill;
pub mod psql;
pub mod restore;
pub mod retention;
pub mod server;
