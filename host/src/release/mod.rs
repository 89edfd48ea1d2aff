//! A release on this host: the keys it is checked against (`trust.rs`), its manifest and
//! artifacts verified (`verify.rs`), downloaded (`fetch.rs`), unpacked (`unpack.rs`), the host
//! checked for it (`preflight.rs`), installed (`install.rs`), watched after its cutover (`watch.rs`) and rolled back
//! (`rollback.rs`).

pub mod fetch;
pub mod install;
pub mod preflight;
pub mod rollback;
pub mod trust;
pub mod unpack;
pub mod verify;
pub mod watch;
