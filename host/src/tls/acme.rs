//! One certificate order (RFC 8555, with instant-acme): the account (created once per ACME
//! directory, its key kept 0600 in `<root>/tls/acme/`), an order for the site's names, their
//! HTTP-01 challenges answered by nginx from `<root>/nginx/acme/` on port 80 (nginx keeps
//! serving meanwhile), then the CSR and the chain. Retries of rejected nonces and polling with
//! backoff are the crate's; every failure names the step and, for a challenge, the name and
//! what the CA saw.

use std::time::Duration;

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

/// Where the CA is and who we are to it.
pub struct Client<'a> {
    /// The ACME directory URL.
    pub directory: &'a str,
    pub email: Option<&'a str>,
    /// A PEM root the directory's HTTPS is signed by (test CAs); the system's roots otherwise.
    pub ca_root: Option<&'a Utf8Path>,
    /// `<root>/tls/acme`: account credentials.
    pub state_dir: Utf8PathBuf,
    /// `<root>/nginx/acme`: nginx serves `/.well-known/acme-challenge/` from here.
    pub webroot: Utf8PathBuf,
}

/// A certificate chain and its private key, both PEM.
pub struct Issued {
    pub chain: String,
    pub key: String,
}

impl Client<'_> {
    /// Orders a certificate for `names`.
    pub fn issue(&self, names: &[String]) -> anyhow::Result<Issued> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let challenges = self.webroot.join(".well-known/acme-challenge");
        let result = runtime.block_on(self.order(names, &challenges));
        // Tokens are single-use: none is left for nginx to serve.
        let _ = std::fs::remove_dir_all(&challenges);
        result
    }

    async fn order(&self, names: &[String], challenges: &Utf8Path) -> anyhow::Result<Issued> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> =
            names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| {
                anyhow::anyhow!("the CA refused the order for {}: {e}", names.join(", "))
            })?;
        std::fs::create_dir_all(challenges)
            .with_context(|| format!("cannot create {challenges}"))?;
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz =
                authz.map_err(|e| anyhow::anyhow!("cannot read an authorization: {e}"))?;
            if authz.status == AuthorizationStatus::Valid {
                continue;
            }
            let name = authz.identifier().to_string();
            let mut challenge = authz
                .challenge(ChallengeType::Http01)
                .with_context(|| format!("the CA offers no HTTP-01 challenge for {name}"))?;
            let path = challenges.join(&challenge.token);
            // nginx's workers read it through a read-only mount: world-readable, not secret.
            std::fs::write(&path, challenge.key_authorization().as_str())
                .with_context(|| format!("cannot write {path}"))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
            challenge
                .set_ready()
                .await
                .map_err(|e| anyhow::anyhow!("{name}: cannot start the challenge: {e}"))?;
        }
        let polling = RetryPolicy::new()
            .initial_delay(Duration::from_millis(500))
            .timeout(Duration::from_secs(120));
        let status = order
            .poll_ready(&polling)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "the HTTP-01 challenge failed ({e}): the names must resolve to this host and port 80 must reach nginx"
                )
            })?;
        if status != OrderStatus::Ready {
            bail!("{}", self.why_invalid(&mut order).await);
        }
        let key = order
            .finalize()
            .await
            .map_err(|e| anyhow::anyhow!("the CA refused the certificate request: {e}"))?;
        let chain = order
            .poll_certificate(&polling)
            .await
            .map_err(|e| anyhow::anyhow!("the CA did not issue the certificate: {e}"))?;
        Ok(Issued { chain, key })
    }

    /// What each failed challenge says (DNS not pointing here, port 80 closed, ...).
    async fn why_invalid(&self, order: &mut instant_acme::Order) -> String {
        let mut reasons = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(authz)) = authorizations.next().await {
            let name = authz.identifier().to_string();
            for c in &authz.challenges {
                if let Some(e) = &c.error {
                    reasons.push(format!(
                        "{name}: {}",
                        e.detail.as_deref().unwrap_or("the challenge failed")
                    ));
                }
            }
        }
        if reasons.is_empty() {
            "the order became invalid".into()
        } else {
            format!(
                "the HTTP-01 challenge failed ({}): the names must resolve to this host and port 80 must reach nginx",
                reasons.join("; ")
            )
        }
    }

    /// The account for this directory: created on first use, its credentials kept 0600.
    async fn account(&self) -> anyhow::Result<Account> {
        let file = self.state_dir.join(format!(
            "account-{}.json",
            &hitsave_schema::hex(&<sha2::Sha256 as sha2::Digest>::digest(self.directory))[..16]
        ));
        let builder = || match self.ca_root {
            Some(root) => Account::builder_with_root(root),
            None => Account::builder(),
        };
        let builder =
            builder().map_err(|e| anyhow::anyhow!("cannot set up the ACME client: {e}"))?;
        if let Ok(bytes) = std::fs::read(&file) {
            let credentials: AccountCredentials = serde_json::from_slice(&bytes)
                .with_context(|| format!("{file} is damaged: remove it to make a new account"))?;
            return builder.from_credentials(credentials).await.map_err(|e| {
                anyhow::anyhow!("cannot reach the ACME server {}: {e}", self.directory)
            });
        }
        let contact = self.email.map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.directory.to_owned(),
                None,
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot reach the ACME server {} (making an account): {e}",
                    self.directory
                )
            })?;
        crate::kit::files::create_private_dir(&self.state_dir)?;
        let _ = std::fs::remove_file(&file);
        crate::kit::files::write_private(&file, &serde_json::to_string(&credentials)?)?;
        Ok(account)
    }
}
