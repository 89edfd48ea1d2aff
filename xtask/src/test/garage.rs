//! A throwaway Garage (a real S3-compatible server) on 127.0.0.1 for the store tests: one
//! node, a bucket and a fixed test key. Stopped by pid when dropped.
//!
//! Garage is not packaged by Debian: the binary is built once with `cargo install` (at
//! opt-level 1) into `~/.cache/hitsave/tools/` and reused by every later run.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};

use crate::child::{Child, free_port, on_free_ports};
use crate::tools;
use hitsave_host::kit::process::wait_until;

const VERSION: &str = "2.5.0";
/// Fixed test credentials, imported into the throwaway server only.
pub const KEY_ID: &str = "GK0123456789abcdef01234567";
pub const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The region clients sign for: AWS's default, so that one AWS_REGION serves Garage and the
/// AWS API emulator (moto, which knows only AWS's regions) in the same command.
pub const REGION: &str = "us-east-1";

pub struct Garage {
    service: Child,
    binary: Utf8PathBuf,
    config: Utf8PathBuf,
    dir: Utf8PathBuf,
    pub endpoint: String,
}

impl Garage {
    pub fn start() -> anyhow::Result<Garage> {
        let binary = binary()?;
        on_free_ports("garage", || Garage::start_with(&binary))
    }

    fn start_with(binary: &Utf8Path) -> anyhow::Result<Garage> {
        let binary = binary.to_owned();
        let dir = Utf8PathBuf::from(format!("/tmp/hitsave-test-garage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let (rpc, s3, admin) = (free_port()?, free_port()?, free_port()?);
        let config = dir.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
                secret = hitsave_host::kit::random::random_hex(32)?,
            ),
        )?;
        let service = Child::spawn_logged(
            "garage",
            Command::new(&binary)
                .args(["-c", config.as_str(), "server"])
                .env("RUST_LOG", "warn"),
            dir.join("garage.log"),
        )?;
        // From here on, dropping `garage` stops the server, also when set-up fails.
        let mut garage = Garage {
            service,
            binary,
            config,
            dir,
            endpoint: format!("http://127.0.0.1:{s3}"),
        };

        wait_until("garage", Duration::from_secs(30), || {
            garage.service.check_running()?;
            Ok(garage.cli(&["status"]).is_ok())
        })?;
        let node = garage.cli(&["node", "id", "-q"])?;
        let node = node.trim().split('@').next().unwrap_or_default().to_owned();
        garage.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node])?;
        garage.cli(&["layout", "apply", "--version", "1"])?;
        garage.cli(&["key", "import", "-n", "test", "--yes", KEY_ID, SECRET])?;
        eprintln!(
            "xtask: garage {VERSION} (pid {}) serves S3 on {}",
            garage.service.pid(),
            garage.endpoint
        );
        Ok(garage)
    }

    /// Creates a bucket the test key can read and write.
    pub fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        self.cli(&["bucket", "create", bucket])?;
        self.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", "test",
        ])?;
        Ok(())
    }

    /// Runs the garage CLI against this server.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.binary)
            .args(["-c", self.config.as_str()])
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .context("cannot run the garage CLI")?;
        if !out.status.success() {
            bail!(
                "garage {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The variables an S3 client needs to talk to this server with the test key.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("HITSAVE_S3_PATH_STYLE", "true".to_owned()),
            // Never read a developer's own AWS configuration in tests.
            ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.service.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The garage binary: on PATH, in the cache, or built into the cache now.
fn binary() -> anyhow::Result<Utf8PathBuf> {
    if let Some(path) = tools::which("garage") {
        return Ok(path);
    }
    let root = tools::cache_dir().join(format!("tools/garage-{VERSION}"));
    let path = root.join("bin/garage");
    if path.is_file() {
        return Ok(path);
    }
    eprintln!("xtask: building garage {VERSION} into {root} (once; a few minutes on 2 cores)");
    let build_dir = tools::cache_dir().join("tools/garage-build");
    duct::cmd!(
        "cargo",
        "install",
        "garage",
        "--locked",
        "--version",
        VERSION,
        "--root",
        &root
    )
    .env("CARGO_TARGET_DIR", &build_dir)
    // A test server on 127.0.0.1 needs no full optimisation: opt-level 1 builds in far less
    // time on a cold CI machine and serves the tests' objects as well.
    .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1")
    .run()
    .with_context(|| format!("`cargo install garage --version {VERSION}` failed"))?;
    // The build tree is large and no longer needed once the binary is installed.
    let _ = std::fs::remove_dir_all(&build_dir);
    Ok(path)
}
