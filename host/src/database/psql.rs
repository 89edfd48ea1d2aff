//! psql on the stack's database, logged in the way the apps log in: a one-off container of the
//! database's image on the stack's network, over TCP with SCRAM, the password read from a
//! secret file into a passfile (0600 in the secrets directory, mounted read-only, removed
//! after). The password is never in an argument or an environment variable of any process.

use std::num::NonZeroU32;

use anyhow::Context;
use base64::Engine;
use camino::Utf8Path;

use crate::site::stack::Stack;

/// Who logs in, to which database, on which network, with which image: the running db
/// container's.
pub struct Database {
    /// What messages call the server: the db container, or the external server's address.
    container: String,
    image: String,
    network: String,
    /// The server's host name on `network`.
    host: String,
    port: u16,
    /// An external server's CA bundle: TLS is then required and verified (verify-full).
    ca_file: Option<String>,
    pub user: String,
    pub name: String,
}

impl Database {
    pub fn of(stack: &Stack) -> anyhow::Result<Database> {
        if stack.external_db() {
            let external = External::of(stack)?;
            return Ok(Database {
                container: format!("{}:{}", external.host, external.port),
                image: external.image,
                network: external.network,
                host: external.host,
                port: external.port,
                ca_file: Some(external.ca_file),
                user: external.user,
                name: external.name,
            });
        }
        let container =
            crate::site::stack::running_container(stack, crate::site::app::Service::Db.name())?;
        let text = duct::cmd!(
            "docker",
            "inspect",
            "--format",
            "{{.Config.Image}}|{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}|{{range .Config.Env}}{{.}};{{end}}",
            &container
        )
        .stdout_capture()
        .stderr_null()
        .read()
        .with_context(|| format!("cannot inspect {container}"))?;
        let mut parts = text.trim().splitn(3, '|');
        let image = parts.next().unwrap_or_default().to_owned();
        let network = parts
            .next()
            .and_then(|n| n.split_whitespace().next())
            .with_context(|| format!("{container} is on no network"))?
            .to_owned();
        // The database's own POSTGRES_USER and POSTGRES_DB (plain settings, not secrets).
        let env: Vec<&str> = parts.next().unwrap_or_default().split(';').collect();
        let setting = |key: &str| {
            env.iter()
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                .unwrap_or("postgres")
                .to_owned()
        };
        Ok(Database {
            user: setting("POSTGRES_USER"),
            name: setting("POSTGRES_DB"),
            container,
            image,
            network,
            host: crate::site::app::Service::Db.name().into(),
            port: 5432,
            ca_file: None,
        })
    }

    /// `docker run ... psql -h db -U <user> -d <db> <args>` with the password from
    /// `password_file`; the passfile goes away when the returned guard is dropped.
    pub fn psql(
        &self,
        password_file: &Utf8Path,
        interactive: bool,
        args: &[String],
    ) -> anyhow::Result<(std::process::Command, tempfile::TempPath)> {
        let passfile = passfile(password_file)?;
        let mut cmd = std::process::Command::new("docker");
        cmd.args(["run", "--rm", "-i"]);
        if interactive {
            cmd.arg("-t");
        }
        cmd.args(["--network", &self.network])
            .arg("--mount")
            .arg(format!(
                "type=bind,source={},target=/run/pgpass,readonly",
                passfile.display()
            ))
            .args(["--env", "PGPASSFILE=/run/pgpass", "--env", "HOME=/tmp"]);
        if let Some(ca) = &self.ca_file {
            cmd.args(External::tls_args(ca));
        }
        cmd.args(["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"])
            .args(["--security-opt", "no-new-privileges:true"])
            .args(["--label", "hitsave.role=psql"])
            // psql itself: the image's entrypoint prepares a server's directories.
            .args(["--entrypoint", "psql"])
            .arg(&self.image)
            .args(["-h", &self.host, "-p", &self.port.to_string()])
            .args(["-U", &self.user, "-d", &self.name])
            .args(args);
        Ok((cmd, passfile))
    }

    /// Runs `sql` (given on psql's standard input) logged in with `password_file`; its output,
    /// or what psql said when it failed.
    pub fn run_sql(&self, password_file: &Utf8Path, sql: &str) -> anyhow::Result<String> {
        let args = ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"].map(String::from);
        let (cmd, _passfile) = self.psql(password_file, false, &args)?;
        let out = duct::cmd(cmd.get_program(), cmd.get_args())
            .stdin_bytes(sql.as_bytes().to_vec())
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .context("cannot run docker")?;
        if !out.status.success() {
            // The first line only: later ones quote the statement.
            let stderr = String::from_utf8_lossy(&out.stderr);
            anyhow::bail!(
                "psql as {} on {} failed: {}",
                self.user,
                self.container,
                stderr.lines().next().unwrap_or("").trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// A libpq passfile for the password in `password_file`: 0600, beside it in the secrets
/// directory, removed when the returned path is dropped.
pub fn passfile(password_file: &Utf8Path) -> anyhow::Result<tempfile::TempPath> {
    let password = std::fs::read_to_string(password_file)
        .with_context(|| format!("cannot read {password_file}"))?;
    let password = password.trim_end_matches(['\n', '\r']);
    let dir = password_file.parent().context("a secret has a directory")?;
    let mut passfile = tempfile::Builder::new()
        .prefix(".pgpass-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a passfile in {dir}"))?;
    // The passfile's escapes: `\` and `:` in a field.
    let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
    std::io::Write::write_all(&mut passfile, format!("*:*:*:*:{escaped}\n").as_bytes())
        .context("cannot write the passfile")?;
    Ok(passfile.into_temp_path())
}

/// An external database server as release.env names it, and how a client container reaches
/// it: the stack's PostgreSQL image (its client tools), on the database's network.
pub struct External {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub ca_file: String,
    pub image: String,
    /// HITSAVE_DB_NETWORK, or Docker's default bridge (RDS is reached through the host).
    pub network: String,
}

impl External {
    pub fn of(stack: &Stack) -> anyhow::Result<External> {
        let db = stack
            .env
            .external_db()
            .context("release.env has no HITSAVE_DB_HOST")?;
        Ok(External {
            port: db
                .port
                .parse()
                .context("HITSAVE_DB_PORT in release.env is not a port")?,
            host: db.host,
            name: db.name,
            user: db.user,
            ca_file: db.ca_file,
            image: stack.env.postgres_image()?.to_owned(),
            network: db.network.unwrap_or_else(|| "bridge".into()),
        })
    }

    /// `docker run` arguments: the CA bundle mounted, libpq told to require TLS and check the
    /// certificate and the host name against it.
    pub fn tls_args(ca_file: &str) -> Vec<String> {
        vec![
            "--mount".into(),
            format!("type=bind,source={ca_file},target=/run/db_ca.pem,readonly"),
            "--env".into(),
            "PGSSLMODE=verify-full".into(),
            "--env".into(),
            "PGSSLROOTCERT=/run/db_ca.pem".into(),
        ]
    }
}

/// PostgreSQL's SCRAM-SHA-256 verifier for `password` (RFC 5802/7677, as the server stores it
/// in pg_authid): `ALTER ROLE ... PASSWORD '<verifier>'` sets the password without the value
/// reaching the server. The values xtask generates are ASCII, which SASLprep leaves as is.
pub fn scram_verifier(password: &str) -> anyhow::Result<String> {
    use aws_lc_rs::{digest, hmac, pbkdf2, rand};
    const ITERATIONS: u32 = 4096;
    let mut salt = [0u8; 16];
    rand::fill(&mut salt).map_err(|_| anyhow::anyhow!("no random bytes for a salt"))?;
    let mut salted = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(ITERATIONS).expect("non-zero"),
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key.as_ref()),
        b64.encode(server_key.as_ref())
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_verifier_has_postgres_shape_and_a_fresh_salt() {
        let a = super::scram_verifier("pencil").unwrap();
        let b = super::scram_verifier("pencil").unwrap();
        assert_ne!(a, b, "each verifier has its own salt");
        let rest = a.strip_prefix("SCRAM-SHA-256$4096:").unwrap();
        let (salt, keys) = rest.split_once('$').unwrap();
        let (stored, server) = keys.split_once(':').unwrap();
        assert_eq!((salt.len(), stored.len(), server.len()), (24, 44, 44));
        assert!(!a.contains("pencil"));
    }
}
