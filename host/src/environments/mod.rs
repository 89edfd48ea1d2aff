//! The environments of a preview host (host.env `HITSAVE_ENVIRONMENTS=many`): `xtask env
//! list|remove|prune` and the front that routes each domain to its environment
//! (`front.rs`). Where each environment lives is `site::placement`'s.

pub mod front;
pub mod inventory;
pub mod teardown;
