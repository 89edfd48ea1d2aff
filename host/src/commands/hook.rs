//! `xtask hook <event>`: one CodeDeploy lifecycle hook (`codedeploy::hooks`).

use camino::Utf8PathBuf;

use crate::codedeploy::hooks::{Event, HookOptions};
use crate::site::settings::HOST_SETTINGS;

/// `hook`'s flags.
#[derive(clap::Args)]
pub struct HookArgs {
    /// The lifecycle event to run.
    #[arg(value_enum)]
    event: Event,
    /// The unpacked bundle (CodeDeploy's deployment archive) [default: the directory above
    /// this xtask's bin/].
    #[arg(long, value_name = "DIR")]
    bundle: Option<Utf8PathBuf>,
    /// Set by the resident program when it runs the release's own program, after it checked
    /// the bundle, the signature, the branch and the age.
    #[arg(long, hide = true)]
    checked: bool,
    /// Host settings: KEY=VALUE lines, optional (docs/operating.md lists the keys; an unknown
    /// key or a bad value is refused).
    #[arg(
        long,
        env = "HITSAVE_HOST_CONFIG",
        value_name = "FILE",
        default_value = HOST_SETTINGS
    )]
    config: Utf8PathBuf,
}

impl HookArgs {
    /// Runs the hook.
    pub fn run(self) -> anyhow::Result<()> {
        crate::codedeploy::hooks::run(HookOptions {
            event: self.event,
            bundle: self.bundle,
            checked: self.checked,
            config: self.config,
        })
    }
}
