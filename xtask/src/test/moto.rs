//! moto's server, the AWS API emulator from PyPI, on 127.0.0.1: the CodeDeploy API for the
//! tests of `cargo xtask deploy` (which talks to it through AWS_ENDPOINT_URL_CODEDEPLOY).
//! Stopped by pid when dropped.

use std::process::Command;
use std::time::Duration;

use hitsave_host::kit::process::wait_until;

use crate::child::{Child, free_port, on_free_ports};

/// A running moto server.
pub struct Moto {
    service: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts it and waits until it answers.
    pub fn start() -> anyhow::Result<Moto> {
        let program = crate::tools::aws_emulator()?;
        on_free_ports("moto", || Moto::start_with(&program))
    }

    fn start_with(program: &camino::Utf8Path) -> anyhow::Result<Moto> {
        let port = free_port()?;
        let dir = tempfile::tempdir()?;
        let service = Child::spawn_logged(
            "moto",
            Command::new(program.as_std_path()).args(["-H", "127.0.0.1", "-p", &port.to_string()]),
            dir.path().join("moto.log"),
        )?;
        let mut moto = Moto {
            service,
            endpoint: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        wait_until("moto", Duration::from_secs(60), || {
            moto.service.check_running()?;
            Ok(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        })?;
        eprintln!(
            "xtask: moto (pid {}) serves the AWS APIs on {}",
            moto.service.pid(),
            moto.endpoint
        );
        Ok(moto)
    }

    /// What a command needs to reach CodeDeploy here (any credentials do; the region must
    /// be one of AWS's, as Garage's test region is).
    pub fn codedeploy_env(&self) -> Vec<(&'static str, String)> {
        vec![("AWS_ENDPOINT_URL_CODEDEPLOY", self.endpoint.clone())]
    }

    /// A CodeDeploy client of this server, with the test's credentials.
    pub async fn codedeploy(&self) -> aws_sdk_codedeploy::Client {
        let config = aws_sdk_codedeploy::Config::builder()
            .behavior_version(aws_sdk_codedeploy::config::BehaviorVersion::latest())
            .region(aws_sdk_codedeploy::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_codedeploy::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .build();
        aws_sdk_codedeploy::Client::from_conf(config)
    }
}
