//! Logging in while the database password is being rotated (`xtask secrets rotate
//! postgres_password`). PostgreSQL keeps one password per role, so for a moment the role's
//! password and the file's disagree: the host writes the new value (keeping the old one as
//! `POSTGRES_PASSWORD_PREVIOUS_FILE`), replaces the app containers, and only then changes the
//! role. A pool here knows both values; when the server refuses the one it is using (28P01), it
//! moves to the other and tries again at once, so no request sees the refusal.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, Postgres};

/// A pool that logs in with the current password or, while a rotation is under way, the
/// previous one.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    logins: Arc<Logins>,
}

struct Logins {
    /// The current password's options first, then the previous one's, if any.
    options: Vec<PgConnectOptions>,
    /// The index in `options` the pool connects with now.
    using: AtomicUsize,
    /// Held while switching, so `using` and the pool's options change together.
    switching: Mutex<()>,
}

/// Never the options: they hold the passwords.
impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("logins", &self.logins.options.len())
            .field("using", &self.using())
            .finish_non_exhaustive()
    }
}

/// 28P01 invalid_password: the server refused the password.
pub fn password_refused(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("28P01"))
}

impl Db {
    /// `pool` connects with `options[0]`; the others are the fallbacks.
    pub(crate) fn new(pool: PgPool, options: Vec<PgConnectOptions>) -> Db {
        Db {
            pool,
            logins: Arc::new(Logins {
                options,
                using: AtomicUsize::new(0),
                switching: Mutex::new(()),
            }),
        }
    }

    /// The pool, for what takes one (the migrator, closing at shutdown). Its connections may
    /// be opened with a refused password: prefer `acquire`.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection; when the server refuses the password in use, the other one is tried.
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        let logins = &self.logins;
        let count = logins.options.len();
        // One more try than there are passwords: a connect that began just before another
        // task switched may still carry the refused one.
        let mut attempt = 0;
        loop {
            let using = logins.using.load(Ordering::SeqCst);
            match self.pool.acquire().await {
                Err(e) if password_refused(&e) && count > 1 && attempt < count => {
                    attempt += 1;
                    let _switching = logins.switching.lock().unwrap_or_else(|p| p.into_inner());
                    // Another task may have switched since this attempt began: then retry
                    // with what it chose.
                    if logins.using.load(Ordering::SeqCst) == using {
                        let next = (using + 1) % count;
                        self.pool.set_connect_options(logins.options[next].clone());
                        logins.using.store(next, Ordering::SeqCst);
                        tracing::warn!(
                            refused = label(using),
                            now_using = label(next),
                            "the database refused a password file; switching (a password rotation is under way)"
                        );
                    }
                }
                result => return result,
            }
        }
    }

    /// Which password the pool logs in with now: "current" or "previous".
    pub fn using(&self) -> &'static str {
        label(self.logins.using.load(Ordering::SeqCst))
    }
}

fn label(index: usize) -> &'static str {
    if index == 0 { "current" } else { "previous" }
}
