//! Test helpers: a fresh database per test on the real PostgreSQL that `cargo xtask test`
//! starts, which it describes in `HITSAVE_TEST_PG*` variables.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::Secret;

/// A database made for one test.
pub struct TestDb {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub password_file: PathBuf,
    pub name: String,
}

fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with `cargo xtask test`, which starts PostgreSQL")
    })
}

impl TestDb {
    /// Creates an empty database with a unique name.
    pub async fn create(label: &str) -> TestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let host = required("HITSAVE_TEST_PGHOST");
        let port: u16 = required("HITSAVE_TEST_PGPORT")
            .parse()
            .expect("HITSAVE_TEST_PGPORT");
        let user = required("HITSAVE_TEST_PGUSER");
        let password_file = PathBuf::from(required("HITSAVE_TEST_PGPASSWORD_FILE"));
        let password = std::fs::read_to_string(&password_file).expect("test password file");
        let name = format!(
            "t_{label}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let db = TestDb {
            host,
            port,
            user,
            password: Secret::new(password.trim_end()),
            password_file,
            name,
        };
        let mut admin = db.connect_to("postgres").await;
        sqlx::raw_sql(&format!("CREATE DATABASE \"{}\"", db.name))
            .execute(&mut admin)
            .await
            .expect("create test database");
        db
    }

    pub fn options_for(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(&self.user)
            .password(self.password.expose())
            .database(database)
    }

    async fn connect_to(&self, database: &str) -> PgConnection {
        PgConnection::connect_with(&self.options_for(database))
            .await
            .expect("connect to the test PostgreSQL")
    }

    pub async fn connect(&self) -> PgConnection {
        self.connect_to(&self.name).await
    }

    /// The environment a `hitsave` or `migrate` process needs to reach this database.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("POSTGRES_HOST", self.host.clone()),
            ("POSTGRES_PORT", self.port.to_string()),
            ("POSTGRES_DB", self.name.clone()),
            ("POSTGRES_USER", self.user.clone()),
            (
                "POSTGRES_PASSWORD_FILE",
                self.password_file.display().to_string(),
            ),
        ]
    }
}

/// A port nobody listens on right now, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Writes `value` to `dir/name` with mode 0600, as a secret file.
pub fn write_secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .expect("write secret file");
    f.write_all(value.as_bytes()).expect("write secret file");
    path
}
