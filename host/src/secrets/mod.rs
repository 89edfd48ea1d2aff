//! Changing the stack's secrets: `set` and `list` (`manage.rs`), and a rotation that applies a
//! new value with no request dropped, keeping the old one for a grace period (`rotate.rs`).
//! The files themselves are the site's (`site::secret_files`).

pub mod rotate;
