//! The PostgreSQL server of the live stack (its db container), as backup and restore use it:
//! SQL through psql inside the container (the client is the server's own version), a dump
//! restored into a new database, and the swap of a database for the live one by renaming.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use camino::Utf8Path;

use crate::site::stack::{Stack, State};

/// For pg_restore: indexes are built without parallel workers, whose shared memory comes from
/// the container's /dev/shm, Docker's 64 MiB unless the compose file says otherwise: a parallel
/// build of a large table's index fails there ("could not resize shared memory segment").
pub const SERIAL_INDEX_BUILDS: &str = "PGOPTIONS=-c max_parallel_maintenance_workers=0";

/// The db container and the login it was started with; for an external database, a client
/// container this process started, whose libpq environment points at the server.
pub struct Server {
    pub container: String,
    pub user: String,
    /// The database the apps use (POSTGRES_DB).
    pub live: String,
    /// The client container and passfile an external server needs, removed on drop.
    _client: Option<Client>,
}

/// A client container of the stack's PostgreSQL image, idle until commands are run in it
/// (`docker exec`): libpq's environment names the external server, requires TLS verified
/// against its CA bundle and logs in with a passfile from the password secret.
struct Client {
    container: String,
    _passfile: tempfile::TempPath,
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = duct::cmd!("docker", "rm", "--force", &self.container)
            .stdout_null()
            .stderr_null()
            .unchecked()
            .run();
    }
}

impl Server {
    /// The running db container of `stack`, or a client of its external server.
    pub fn of(stack: &Stack) -> anyhow::Result<Server> {
        if stack.external_db() {
            return Server::external(stack);
        }
        let container = stack
            .containers()?
            .into_iter()
            .find(|c| {
                c.service == crate::site::app::Service::Db.name() && c.state == State::Running
            })
            .map(|c| c.name)
            .context("the database container is not running")?;
        Server::in_container(container)
    }

    /// A client container for `stack`'s external server (see `Client`).
    fn external(stack: &Stack) -> anyhow::Result<Server> {
        let db = crate::database::psql::External::of(stack)?;
        let secrets = stack.env.secrets_dir()?;
        let passfile = crate::database::psql::passfile(&secrets.join("postgres_password"))?;
        let container = format!("{}-db-client-{}", stack.project, std::process::id());
        let mut args: Vec<String> = ["run", "--detach", "--rm", "--name", &container]
            .map(String::from)
            .into();
        args.extend(["--network".into(), db.network.clone()]);
        args.extend([
            "--mount".into(),
            format!(
                "type=bind,source={},target=/run/pgpass,readonly",
                passfile.display()
            ),
        ]);
        args.extend(crate::database::psql::External::tls_args(&db.ca_file));
        for (k, v) in [
            ("PGPASSFILE", "/run/pgpass".to_owned()),
            ("PGHOST", db.host.clone()),
            ("PGPORT", db.port.to_string()),
            ("HOME", "/tmp".into()),
        ] {
            args.extend(["--env".into(), format!("{k}={v}")]);
        }
        args.extend(
            [
                "--read-only",
                "--tmpfs",
                "/tmp",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges:true",
                "--label",
                "hitsave.role=db-client",
                "--entrypoint",
                "sleep",
            ]
            .map(String::from),
        );
        args.extend([db.image.clone(), "infinity".into()]);
        duct::cmd("docker", &args)
            .stdout_null()
            .stderr_capture()
            .run()
            .with_context(|| {
                format!(
                    "cannot start a client container for {}:{}",
                    db.host, db.port
                )
            })?;
        let server = Server {
            container: container.clone(),
            user: db.user,
            live: db.name,
            _client: Some(Client {
                container,
                _passfile: passfile,
            }),
        };
        // One query now: a refused login or certificate is said here, once, clearly.
        server.psql("postgres", "SELECT 1").with_context(|| {
            format!(
                "cannot log in to the external database {}:{} over TLS",
                db.host, db.port
            )
        })?;
        Ok(server)
    }

    /// Whether the server in its own container accepts connections now (one `pg_isready`
    /// there, on 127.0.0.1: not for an external server, whose container is only a client).
    pub fn accepts(&self) -> bool {
        accepts(&self.container, &self.user, &self.live)
    }

    /// Waits until it accepts connections, asking every 100 ms: Docker checks the database
    /// every 30 s, and its first check comes that long after a start.
    pub fn wait_accepting(&self, timeout: std::time::Duration) -> anyhow::Result<()> {
        use crate::kit::process::Wait;
        crate::kit::process::wait_for(
            &format!("the database ({}) to accept connections", self.container),
            timeout,
            std::time::Duration::from_millis(100),
            || {
                Ok(if self.accepts() {
                    Wait::Done(())
                } else {
                    Wait::NotYet("pg_isready: it does not accept connections yet".into())
                })
            },
        )
    }

    /// The server in `container`, with the login its environment names.
    pub fn in_container(container: String) -> anyhow::Result<Server> {
        // Its environment as its processes (and so psql by `docker exec`) see it.
        let inspected = crate::kit::engine::container(&container)
            .context("cannot read POSTGRES_USER and POSTGRES_DB in the database container")?
            .with_context(|| format!("there is no container {container}"))?;
        match (inspected.env("POSTGRES_USER"), inspected.env("POSTGRES_DB")) {
            (Some(user), Some(live)) => Ok(Server {
                container,
                user: user.to_owned(),
                live: live.to_owned(),
                _client: None,
            }),
            _ => bail!("the database container has no POSTGRES_USER and POSTGRES_DB"),
        }
    }

    /// Runs `sql` in `database`, with psql's unaligned output (one value a line).
    pub fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let out = self
            .psql_command(database, &["-c", sql])
            .stderr_capture()
            .stdout_capture()
            .unchecked()
            .run()?;
        if !out.status.success() {
            bail!(
                "psql in {}: {}",
                self.container,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// psql in the container on `database`, quiet, unaligned, stopping at the first error;
    /// `tail` follows (`-c SQL`, or nothing for a session on stdin).
    pub fn psql_command(&self, database: &str, tail: &[&str]) -> duct::Expression {
        let mut args = vec!["exec"];
        if tail.is_empty() {
            args.push("-i"); // A session reads its statements from stdin.
        }
        args.push(&self.container);
        args.extend(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"]);
        args.extend(["--username", &self.user, "--dbname", database]);
        args.extend_from_slice(tail);
        duct::cmd("docker", args)
    }

    /// Which database `live` is: the cluster's system identifier and its name. A role that
    /// may not read pg_control_system() (a managed server's) gets the server's address and
    /// port in its place, which still tells one server from another.
    pub fn database_id(&self) -> anyhow::Result<hitsave_schema::DatabaseId> {
        let line = self
            .psql(
                &self.live,
                "SELECT system_identifier::text || ' ' || current_database() FROM pg_control_system()",
            )
            .or_else(|_| {
                self.psql(
                    &self.live,
                    "SELECT 'server:' || coalesce(host(inet_server_addr()), 'local') || ':' || coalesce(inet_server_port(), 0) || ' ' || current_database()",
                )
            })?;
        let (system_identifier, name) = line
            .split_once(' ')
            .with_context(|| format!("psql printed {line:?} for the database's identity"))?;
        Ok(hitsave_schema::DatabaseId {
            system_identifier: system_identifier.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The databases whose name starts with `prefix`, sorted (names carry their UTC time).
    pub fn databases(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let names = self.psql(
            "postgres",
            &format!(
                "SELECT datname FROM pg_database WHERE starts_with(datname, {}) ORDER BY datname",
                literal(prefix)
            ),
        )?;
        Ok(names.lines().map(str::to_owned).collect())
    }

    pub fn create(&self, name: &str) -> anyhow::Result<()> {
        self.psql(
            "postgres",
            &format!(
                "CREATE DATABASE {} OWNER {}",
                ident(name)?,
                ident(&self.user)?
            ),
        )
        .map(drop)
        .with_context(|| format!("cannot create database {name}"))
    }

    /// Drops `name`, ending any session still in it; never the live database.
    pub fn drop_database(&self, name: &str) -> anyhow::Result<()> {
        anyhow::ensure!(name != self.live, "refusing to drop the live database");
        self.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name)?),
        )
        .map(drop)
        .with_context(|| format!("cannot drop database {name}"))
    }

    /// Restores a custom-format dump into the empty database `name`, all or nothing.
    pub fn restore(&self, name: &str, dump: &Utf8Path) -> anyhow::Result<()> {
        let out = duct::cmd!(
            "docker",
            "exec",
            "-i",
            "--env",
            SERIAL_INDEX_BUILDS,
            &self.container,
            "pg_restore",
            "--exit-on-error",
            "--single-transaction",
            "--no-owner",
            "--username",
            &self.user,
            "--dbname",
            name
        )
        .stdin_path(dump)
        .stderr_capture()
        .stdout_null()
        .unchecked()
        .run()
        .context("cannot run pg_restore in the database container")?;
        if !out.status.success() {
            bail!(
                "pg_restore into {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Exact row counts of every table in `database`'s public schema.
    pub fn row_counts(&self, database: &str) -> anyhow::Result<BTreeMap<String, u64>> {
        parse_counts(&self.psql(database, ROW_COUNTS)?)
    }

    /// Makes `incoming` the live database and keeps the live one as `replaced`, in one
    /// transaction: the apps see the old database or the new one, never neither. The live
    /// database takes no new sessions meanwhile and those still in either are ended first
    /// (this host's apps are stopped by then; other hosts sharing an external server would
    /// otherwise connect again before the rename).
    pub fn swap(&self, incoming: &str, replaced: &str) -> anyhow::Result<()> {
        let (live, incoming_id, replaced_id) =
            (ident(&self.live)?, ident(incoming)?, ident(replaced)?);
        self.psql(
            "postgres",
            &format!("ALTER DATABASE {live} WITH ALLOW_CONNECTIONS false"),
        )?;
        let swapped = self
            .psql(
                "postgres",
                // Each termination waits (up to 5 s) for the session to end.
                &format!(
                    "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity \
                     WHERE datname IN ({}, {}) AND pid <> pg_backend_pid()",
                    literal(&self.live),
                    literal(incoming)
                ),
            )
            .and_then(|_| {
                self.psql(
                    "postgres",
                    &format!(
                        "BEGIN; ALTER DATABASE {live} RENAME TO {replaced_id}; \
                         ALTER DATABASE {incoming_id} RENAME TO {live}; COMMIT;"
                    ),
                )
            })
            .with_context(|| format!("cannot swap database {incoming} for {}", self.live));
        // Whichever database has the old one's name now, and the one kept, take sessions.
        let reopened = match &swapped {
            Ok(_) => self.psql(
                "postgres",
                &format!("ALTER DATABASE {replaced_id} WITH ALLOW_CONNECTIONS true"),
            ),
            Err(_) => self.psql(
                "postgres",
                &format!("ALTER DATABASE {live} WITH ALLOW_CONNECTIONS true"),
            ),
        };
        swapped?;
        reopened.map(drop)
    }
}

/// A database name this program made up (`[a-z0-9_]`), quoted as an identifier.
fn ident(name: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        !name.is_empty()
            && name.len() < 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "{name:?} is not a database name this program uses"
    );
    Ok(format!("\"{name}\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
/// Exact row counts of every table in the public schema, on one line: `t1=3,t2=0`.
pub const ROW_COUNTS: &str = "SELECT coalesce(string_agg(t || '=' || (xpath('/row/c/text()', \
     query_to_xml(format('SELECT count(*) AS c FROM public.%I', t), false, true, '')))[1]::text, \
     ',' ORDER BY t), '') FROM (SELECT tablename::text AS t FROM pg_tables \
     WHERE schemaname = 'public') s;";

pub fn parse_counts(line: &str) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    line.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (table, count) = pair
                .rsplit_once('=')
                .with_context(|| format!("psql printed {pair:?} for a row count"))?;
            Ok((table.to_owned(), count.parse()?))
        })
        .collect()
}

/// Whether the server in `container` accepts connections to `database` as `user`: `pg_isready`
/// in the container, over TCP as the apps connect (the image's entrypoint first runs a server
/// on its socket only, while it initialises a new data directory).
pub fn accepts(container: &str, user: &str, database: &str) -> bool {
    duct::cmd!(
        "docker",
        "exec",
        container,
        "pg_isready",
        "-h",
        "127.0.0.1",
        "-U",
        user,
        "-d",
        database
    )
    .stdout_null()
    .stderr_null()
    .unchecked()
    .run()
    .is_ok_and(|o| o.status.success())
}
