//! A throwaway PostgreSQL cluster for tests: initdb into a temporary directory, the server on
//! 127.0.0.1 at a free port (no Unix socket), password login, fsync off. Stopped by pid and
//! deleted when dropped.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};

use crate::child::{Child, free_port};
use crate::tools;
use hitsave_host::kit::files::write_private;
use hitsave_host::kit::process::wait_until;
use hitsave_host::kit::random::random_hex;

pub const USER: &str = "hitsave";

pub struct TestPostgres {
    pub port: u16,
    pub password_file: Utf8PathBuf,
    /// A libpq password file, so psql never sees the password in its arguments or env.
    pgpass: Utf8PathBuf,
    bin: Utf8PathBuf,
    dir: Utf8PathBuf,
    server: Option<Child>,
    /// Leave the directory when dropped (a cluster a test starts again).
    keep: bool,
}

/// PostgreSQL refuses to run as root: as root, run it as the `postgres` user that Debian's
/// package creates.
fn unprivileged_user() -> anyhow::Result<Option<nix::unistd::User>> {
    if !tools::is_root() {
        return Ok(None);
    }
    nix::unistd::User::from_name("postgres")?
        .map(Some)
        .context("running as root, but there is no `postgres` user to run PostgreSQL as")
}

impl TestPostgres {
    pub fn start() -> anyhow::Result<TestPostgres> {
        let dir = Utf8PathBuf::from_path_buf(std::env::temp_dir())
            .map_err(|p| anyhow::anyhow!("temporary directory {p:?} is not UTF-8"))?
            .join(format!("hitsave-test-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TestPostgres::start_in(dir, false)
    }

    /// A server on the cluster in `dir`, made there first when there is none; `keep`: the
    /// directory stays when the server is dropped (a cluster a test starts again).
    pub fn start_in(dir: Utf8PathBuf, keep: bool) -> anyhow::Result<TestPostgres> {
        let bin = tools::postgres_bin_dir()?;
        let user = unprivileged_user()?;
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {dir}"))?;
        let mut pg = TestPostgres {
            port: free_port()?,
            password_file: dir.join("password"),
            pgpass: dir.join("pgpass"),
            bin,
            dir,
            server: None,
            keep,
        };
        let data = pg.dir.join("data");
        let fresh = !data.join("PG_VERSION").is_file();
        let password = if fresh {
            let password = random_hex(16)?;
            write_private(&pg.password_file, &password)?;
            password
        } else {
            std::fs::read_to_string(&pg.password_file)?
                .trim()
                .to_owned()
        };
        // Replaced: a cluster started again has one from its last port.
        hitsave_host::kit::files::replace_private(
            &pg.pgpass,
            format!("127.0.0.1:{}:*:{USER}:{password}\n", pg.port).as_bytes(),
        )?;
        if let Some(u) = &user {
            std::os::unix::fs::chown(&pg.dir, Some(u.uid.as_raw()), Some(u.gid.as_raw()))?;
            std::os::unix::fs::chown(
                &pg.password_file,
                Some(u.uid.as_raw()),
                Some(u.gid.as_raw()),
            )?;
        }
        if fresh {
            pg.initdb(user.as_ref(), &data)?;
        }
        pg.serve(user.as_ref(), &data)?;
        Ok(pg)
    }

    fn initdb(&self, user: Option<&nix::unistd::User>, data: &Utf8Path) -> anyhow::Result<()> {
        let pg = self;
        let mut initdb = pg.command("initdb", user);
        initdb
            .args(["-D", data.as_str(), "-U", USER, "-A", "scram-sha-256"])
            .args(["--pwfile", pg.password_file.as_str()])
            .args(["--no-sync", "--no-locale", "-E", "UTF8"]);
        let out = initdb.output().context("cannot run initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        Ok(())
    }

    fn serve(&mut self, user: Option<&nix::unistd::User>, data: &Utf8Path) -> anyhow::Result<()> {
        let pg = self;
        let mut server = pg.command("postgres", user);
        server
            .args(["-D", data.as_str(), "-p", &pg.port.to_string()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
            ])
            // Test data is disposable: trade durability for speed.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=300"]);
        pg.server = Some(Child::spawn_logged(
            "postgres",
            &mut server,
            pg.dir.join("server.log"),
        )?);
        let port = pg.port.to_string();
        let isready = pg.bin.join("pg_isready");
        wait_until("PostgreSQL", Duration::from_secs(60), || {
            pg.server.as_mut().expect("started").check_running()?;
            Ok(Command::new(&isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port])
                .status()?
                .success())
        })
        .with_context(|| format!("see {}/server.log", pg.dir))?;
        eprintln!(
            "xtask: PostgreSQL {} on 127.0.0.1:{} (pid {})",
            pg.bin.parent().and_then(Utf8Path::file_name).unwrap_or("?"),
            pg.port,
            pg.server.as_ref().expect("started").pid()
        );
        Ok(())
    }

    fn command(&self, program: &str, user: Option<&nix::unistd::User>) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some(u) = user {
            cmd.uid(u.uid.as_raw())
                .gid(u.gid.as_raw())
                .current_dir(&self.dir);
        }
        cmd
    }

    /// What the tests read to reach this server (see `hitsave_db::testing`).
    pub fn test_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HITSAVE_TEST_PGHOST", "127.0.0.1".into()),
            ("HITSAVE_TEST_PGPORT", self.port.to_string()),
            ("HITSAVE_TEST_PGUSER", USER.into()),
            (
                "HITSAVE_TEST_PGPASSWORD_FILE",
                self.password_file.to_string(),
            ),
        ]
    }

    /// What `hitsave` and `migrate` read to reach `database` on this server.
    pub fn app_env(&self, database: &str) -> Vec<(&'static str, String)> {
        vec![
            ("POSTGRES_HOST", "127.0.0.1".into()),
            ("POSTGRES_PORT", self.port.to_string()),
            ("POSTGRES_DB", database.into()),
            ("POSTGRES_USER", USER.into()),
            ("POSTGRES_PASSWORD_FILE", self.password_file.to_string()),
        ]
    }

    /// Runs one SQL statement with psql and returns its unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-tAc", sql])
            .env("PGPASSFILE", &self.pgpass)
            .output()
            .context("cannot run psql")?;
        if !out.status.success() {
            bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
