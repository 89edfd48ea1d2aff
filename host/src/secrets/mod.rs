//! Changing the stack's secrets: a rotation that applies a new value with no request dropped,
//! keeping the old one for a grace period (`rotate.rs`). `set` and `list` are the `secrets`
//! command's (`commands::secrets`).
//! The files themselves are the site's (`site::secret_files`).

pub mod rotate;
