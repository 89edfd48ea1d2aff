//! Deployment groups made on demand (a pull request's `preview-*` group): created from the
//! branch_config entry's `deploymentGroupConfig` when missing, updated when its service role
//! or tag filters differ, and deleted when the pull request is closed (`--remove-group`).

use anyhow::bail;
use aws_sdk_codedeploy::Client;
use aws_sdk_codedeploy::error::DisplayErrorContext;
use aws_sdk_codedeploy::types::{Ec2TagFilter, Ec2TagFilterType};
use hitsave_host::kit::ui::Ui;
use xtask::branch_config::{GroupConfig, TagFilter};

/// The groups `--remove-group` deletes: CI makes these and nothing else.
pub const PREVIEW_PREFIX: &str = "preview-";

/// `group` exists in `application` as `config` says: created or updated when it does not.
pub async fn ensure(
    ui: &Ui,
    client: &Client,
    application: &str,
    group: &str,
    config: &GroupConfig,
) -> anyhow::Result<()> {
    let config = &config.resolved()?;
    let found = client
        .get_deployment_group()
        .application_name(application)
        .deployment_group_name(group)
        .send()
        .await;
    let info = match found {
        Ok(out) => out.deployment_group_info,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_deployment_group_does_not_exist_exception()) =>
        {
            client
                .create_deployment_group()
                .application_name(application)
                .deployment_group_name(group)
                .service_role_arn(&config.service_role_arn)
                .set_ec2_tag_filters(Some(filters(config)))
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot create deployment group {group} of {application}: {}; nothing was deployed",
                        DisplayErrorContext(&e)
                    )
                })?;
            ui.info(&format!(
                "created deployment group {group} ({} tag filter(s), role {})",
                config.ec2_tag_filters.len(),
                config.service_role_arn
            ));
            return Ok(());
        }
        Err(e) => bail!(
            "cannot read deployment group {group} of {application}: {}",
            DisplayErrorContext(&e)
        ),
    };
    let current = GroupConfig {
        service_role_arn: info
            .as_ref()
            .and_then(|i| i.service_role_arn())
            .unwrap_or_default()
            .to_owned(),
        ec2_tag_filters: {
            let mut found: Vec<TagFilter> = info
                .as_ref()
                .map(|i| i.ec2_tag_filters())
                .unwrap_or_default()
                .iter()
                .map(|f| TagFilter {
                    kind: f.r#type().map_or("", |t| t.as_str()).to_owned(),
                    key: f.key().unwrap_or_default().to_owned(),
                    value: f.value().unwrap_or_default().to_owned(),
                })
                .collect();
            found.sort();
            found
        },
    };
    if current == *config {
        ui.info(&format!("deployment group {group} exists as configured"));
        return Ok(());
    }
    client
        .update_deployment_group()
        .application_name(application)
        .current_deployment_group_name(group)
        .service_role_arn(&config.service_role_arn)
        .set_ec2_tag_filters(Some(filters(config)))
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "deployment group {group} is not made as branch_config says, and updating it failed: {}; nothing was deployed",
                DisplayErrorContext(&e)
            )
        })?;
    ui.info(&format!(
        "updated deployment group {group} to branch_config's role and tag filters"
    ));
    Ok(())
}

fn filters(config: &GroupConfig) -> Vec<Ec2TagFilter> {
    config
        .ec2_tag_filters
        .iter()
        .map(|f| {
            Ec2TagFilter::builder()
                .r#type(Ec2TagFilterType::from(f.kind.as_str()))
                .key(&f.key)
                .value(&f.value)
                .build()
        })
        .collect()
}

/// Deletes the preview group `group`; its hosts remove the environment when they see it gone.
pub fn remove(ui: &Ui, application: &str, group: &str) -> anyhow::Result<()> {
    if !group.starts_with(PREVIEW_PREFIX) {
        bail!(
            "--remove-group deletes the groups CI makes for pull requests ({PREVIEW_PREFIX}*), not {group}: delete another group in the CodeDeploy console; nothing was changed"
        );
    }
    super::with_codedeploy(async |client| {
        match client
            .delete_deployment_group()
            .application_name(application)
            .deployment_group_name(group)
            .send()
            .await
        {
            Ok(_) => {
                ui.info(&format!(
                    "deleted deployment group {group} of {application}"
                ));
                Ok(())
            }
            Err(e) => bail!(
                "cannot delete deployment group {group} of {application}: {}",
                DisplayErrorContext(&e)
            ),
        }
    })
}
