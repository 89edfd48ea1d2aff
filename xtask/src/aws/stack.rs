//! The stack through CloudFormation's API (the official SDK): change sets made, described,
//! refused or executed, and the stack's events followed until it settles.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::{
    Capability, ChangeAction, ChangeSetStatus, ChangeSetType, Parameter, Replacement,
};

use super::StackFlags;
use super::template::Rendered;

/// Resource types whose loss loses data: never deleted or replaced unless named.
const PROTECTED: &[&str] = &["AWS::S3::Bucket", "AWS::EC2::Volume"];
/// CloudFormation takes a template body up to this size (larger ones go through S3).
const BODY_MAX: usize = 51_200;
/// How long a stack may take to settle.
const TIMEOUT: Duration = Duration::from_secs(3600);

/// One change a change set would make.
struct Change {
    action: String,
    logical_id: String,
    resource_type: String,
    replacement: String,
}

impl Change {
    /// Whether it deletes or may replace a resource that holds data.
    fn loses_data(&self) -> bool {
        PROTECTED.contains(&self.resource_type.as_str())
            && (self.action == "Remove"
                || (self.action == "Modify"
                    && matches!(self.replacement.as_str(), "True" | "Conditional")))
    }
}

/// An SDK error as one line: the service's code and message.
fn said<E>(e: &aws_sdk_cloudformation::error::SdkError<E>) -> String
where
    E: std::error::Error + aws_sdk_cloudformation::error::ProvideErrorMetadata + 'static,
{
    match e.as_service_error() {
        Some(s) => format!(
            "{}: {}",
            s.code().unwrap_or("error"),
            s.message().unwrap_or("no message")
        ),
        None => format!("{}", aws_sdk_cloudformation::error::DisplayErrorContext(e)),
    }
}

fn with_client<T>(work: impl AsyncFnOnce(Client) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        work(Client::new(&config)).await
    })
}

/// Prints what applying would change; changes nothing (the change set is deleted, and a stack
/// made only to hold it too).
pub fn plan(flags: &StackFlags, rendered: &Rendered) -> anyhow::Result<()> {
    with_client(async |client| {
        let made = make_change_set(&client, flags, rendered).await?;
        let Some((id, creates, changes)) = made else {
            return Ok(());
        };
        print(&changes);
        for c in changes.iter().filter(|c| c.loses_data()) {
            eprintln!(
                "xtask: aws: {} {} ({}) would lose its data: apply refuses it unless given --allow-replace {}",
                c.action, c.logical_id, c.resource_type, c.logical_id
            );
        }
        discard(&client, flags, &id, creates).await?;
        eprintln!(
            "xtask: aws: plan only: nothing was changed (`cargo xtask aws apply` applies it)"
        );
        Ok(())
    })
}

/// Applies the template through a change set, refusing one that loses data unless allowed.
pub fn apply(flags: &StackFlags, rendered: &Rendered, allowed: &[String]) -> anyhow::Result<()> {
    with_client(async |client| {
        let Some((id, creates, changes)) = make_change_set(&client, flags, rendered).await? else {
            return Ok(());
        };
        print(&changes);
        let refused: Vec<&Change> = changes
            .iter()
            .filter(|c| c.loses_data() && !allowed.contains(&c.logical_id))
            .collect();
        if !refused.is_empty() {
            discard(&client, flags, &id, creates).await?;
            bail!(
                "the change would {}: nothing was changed. If that is meant (the data is backed up or moved), apply again with {}",
                refused
                    .iter()
                    .map(|c| format!(
                        "{} {} ({})",
                        if c.action == "Remove" {
                            "delete"
                        } else {
                            "replace"
                        },
                        c.logical_id,
                        c.resource_type
                    ))
                    .collect::<Vec<_>>()
                    .join(" and "),
                refused
                    .iter()
                    .map(|c| format!("--allow-replace {}", c.logical_id))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let started = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
        client
            .execute_change_set()
            .stack_name(&flags.stack)
            .change_set_name(&id)
            .send()
            .await
            .context("cannot execute the change set")?;
        eprintln!(
            "xtask: aws: applying {} change(s) to stack {}",
            changes.len(),
            flags.stack
        );
        follow(&client, &flags.stack, started).await
    })
}

/// The stack's outputs, by key.
pub fn outputs(stack: &str) -> anyhow::Result<BTreeMap<String, String>> {
    with_client(async |client| {
        let found = client
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| match said(&e) {
                s if s.contains("does not exist") => {
                    anyhow::anyhow!("there is no stack {stack}: `cargo xtask aws apply` makes it")
                }
                s => anyhow::anyhow!("cannot read stack {stack}: {s}"),
            })?;
        let stack = found.stacks().first().context("no such stack")?;
        Ok(stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect())
    })
}

/// A change set for the template: its id, whether it creates the stack, and its changes;
/// `None` when there is nothing to change (said, and the empty change set removed).
async fn make_change_set(
    client: &Client,
    flags: &StackFlags,
    rendered: &Rendered,
) -> anyhow::Result<Option<(String, bool, Vec<Change>)>> {
    let body = serde_json::to_string(&rendered.template)?;
    if body.len() > BODY_MAX {
        bail!(
            "the rendered template is {} bytes; CloudFormation takes {BODY_MAX} in a request: make it smaller",
            body.len()
        );
    }
    let existing = existing_parameters(client, &flags.stack).await?;
    let creates = existing.is_none();
    let parameters = parameters(flags, rendered, existing.as_deref().unwrap_or_default())?;
    let name = format!(
        "hitsave-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    let made = match client
        .create_change_set()
        .stack_name(&flags.stack)
        .change_set_name(&name)
        .change_set_type(if creates {
            ChangeSetType::Create
        } else {
            ChangeSetType::Update
        })
        .template_body(body)
        .set_parameters(Some(parameters))
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
    {
        Ok(made) => made,
        // moto says so at once; AWS makes a change set that fails (below).
        Err(e) if said(&e).contains("No updates are to be performed") => {
            eprintln!(
                "xtask: aws: stack {} is up to date: nothing to change",
                flags.stack
            );
            return Ok(None);
        }
        Err(e) => bail!("cannot make a change set: {}", said(&e)),
    };
    let id = made.id().unwrap_or(&name).to_owned();
    eprintln!(
        "xtask: aws: change set {name} for {} stack {}",
        if creates { "a new" } else { "the" },
        flags.stack
    );
    let started = Instant::now();
    loop {
        let set = client
            .describe_change_set()
            .stack_name(&flags.stack)
            .change_set_name(&id)
            .send()
            .await
            .context("cannot read the change set")?;
        match set.status() {
            Some(ChangeSetStatus::CreateComplete) => {
                let changes = changes(set.changes());
                if changes.is_empty() {
                    discard(client, flags, &id, creates).await?;
                    eprintln!(
                        "xtask: aws: stack {} is up to date: nothing to change",
                        flags.stack
                    );
                    return Ok(None);
                }
                return Ok(Some((id, creates, changes)));
            }
            Some(ChangeSetStatus::Failed) => {
                let why = set.status_reason().unwrap_or_default().to_owned();
                discard(client, flags, &id, creates).await?;
                if why.contains("didn't contain changes") || why.contains("No updates") {
                    eprintln!(
                        "xtask: aws: stack {} is up to date: nothing to change",
                        flags.stack
                    );
                    return Ok(None);
                }
                bail!("CloudFormation refused the change set: {why}");
            }
            _ if started.elapsed() > Duration::from_secs(600) => {
                bail!("the change set was not ready after 10 minutes")
            }
            _ => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

/// The names of the stack's parameters, or `None` when there is no stack yet (or only one a
/// plan left in review).
async fn existing_parameters(client: &Client, stack: &str) -> anyhow::Result<Option<Vec<String>>> {
    match client.describe_stacks().stack_name(stack).send().await {
        Ok(found) => Ok(found.stacks().first().and_then(|s| {
            let status = s.stack_status().map(|s| s.as_str()).unwrap_or_default();
            (status != "REVIEW_IN_PROGRESS").then(|| {
                s.parameters()
                    .iter()
                    .filter_map(|p| p.parameter_key().map(str::to_owned))
                    .collect()
            })
        })),
        Err(e) => {
            let said = said(&e);
            if said.contains("does not exist") {
                Ok(None)
            } else {
                bail!("cannot reach CloudFormation: {said}")
            }
        }
    }
}

/// The parameters given, and for an update the stack's value of every other one it has.
fn parameters(
    flags: &StackFlags,
    rendered: &Rendered,
    existing: &[String],
) -> anyhow::Result<Vec<Parameter>> {
    let declared = rendered.template["Parameters"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for (key, value) in &flags.params {
        if !declared.contains_key(key) {
            bail!(
                "the template has no parameter {key}; it has {}",
                declared.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        out.push(
            Parameter::builder()
                .parameter_key(key)
                .parameter_value(value)
                .build(),
        );
    }
    for key in existing {
        if declared.contains_key(key) && !flags.params.iter().any(|(k, _)| k == key) {
            out.push(
                Parameter::builder()
                    .parameter_key(key)
                    .use_previous_value(true)
                    .build(),
            );
        }
    }
    Ok(out)
}

fn changes(raw: &[aws_sdk_cloudformation::types::Change]) -> Vec<Change> {
    raw.iter()
        .filter_map(|c| c.resource_change())
        .map(|r| Change {
            action: r
                .action()
                .map(ChangeAction::as_str)
                .unwrap_or("?")
                .to_owned(),
            logical_id: r.logical_resource_id().unwrap_or("?").to_owned(),
            resource_type: r.resource_type().unwrap_or("?").to_owned(),
            replacement: r
                .replacement()
                .map(Replacement::as_str)
                .unwrap_or("")
                .to_owned(),
        })
        .collect()
}

fn print(changes: &[Change]) {
    println!(
        "{:<8} {:<28} {:<36} replacement",
        "action", "resource", "type"
    );
    for c in changes {
        println!(
            "{:<8} {:<28} {:<36} {}",
            c.action,
            c.logical_id,
            c.resource_type,
            if c.replacement.is_empty() {
                "-"
            } else {
                &c.replacement
            }
        );
    }
}

/// Deletes the change set, and the stack when it was made only to hold it.
async fn discard(
    client: &Client,
    flags: &StackFlags,
    id: &str,
    creates: bool,
) -> anyhow::Result<()> {
    client
        .delete_change_set()
        .stack_name(&flags.stack)
        .change_set_name(id)
        .send()
        .await
        .context("cannot delete the change set")?;
    if creates {
        client
            .delete_stack()
            .stack_name(&flags.stack)
            .send()
            .await
            .context("cannot delete the empty stack the change set was made in")?;
    }
    Ok(())
}

/// Prints the stack's events from `since` until it settles; an error naming what failed when
/// it did not end complete.
async fn follow(
    client: &Client,
    stack: &str,
    since: aws_smithy_types::DateTime,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    loop {
        let events = client
            .describe_stack_events()
            .stack_name(stack)
            .send()
            .await
            .context("cannot read the stack's events")?;
        let mut new: Vec<_> = events
            .stack_events()
            .iter()
            .filter(|e| e.timestamp().is_some_and(|t| t.secs() >= since.secs()))
            .filter(|e| seen.insert(e.event_id().unwrap_or_default().to_owned()))
            .collect();
        new.reverse();
        for e in new {
            let status = e.resource_status().map(|s| s.as_str()).unwrap_or("?");
            let reason = e.resource_status_reason().unwrap_or_default();
            eprintln!(
                "xtask: aws: {:<28} {status} {reason}",
                e.logical_resource_id().unwrap_or("?")
            );
            if status.ends_with("_FAILED") {
                failures.push(format!(
                    "{}: {reason}",
                    e.logical_resource_id().unwrap_or("?")
                ));
            }
        }
        let found = client.describe_stacks().stack_name(stack).send().await?;
        let status = found
            .stacks()
            .first()
            .and_then(|s| s.stack_status())
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        if status.ends_with("_COMPLETE") || status.ends_with("_FAILED") {
            if matches!(status.as_str(), "CREATE_COMPLETE" | "UPDATE_COMPLETE") {
                eprintln!(
                    "xtask: aws: stack {stack} is {status} ({:.0} s); `cargo xtask aws outputs` prints its outputs",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            bail!(
                "stack {stack} ended {status}: {}",
                if failures.is_empty() {
                    "see its events".into()
                } else {
                    failures.join("; ")
                }
            );
        }
        if started.elapsed() > TIMEOUT {
            bail!(
                "stack {stack} is still {status} after an hour; it goes on in AWS: see its events"
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}
