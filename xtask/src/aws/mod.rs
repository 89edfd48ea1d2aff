//! `cargo xtask aws template|plan|apply|outputs`: the AWS side as one CloudFormation stack
//! (deploy/aws/hitsave.cfn.yml, rendered by `template`), changed only through change sets:
//! `plan` shows what a change set would do and throws it away; `apply` makes one, refuses it
//! when it would delete or replace the release bucket or a data volume (unless that resource
//! is named with `--allow-replace`), executes it and follows the stack's events; `outputs`
//! prints what the workflows and hosts are given (role ARNs, the store URL). Credentials and
//! region are the AWS SDK's usual chain; AWS_ENDPOINT_URL_CLOUDFORMATION points it elsewhere.

mod stack;
pub mod template;

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Aws,
}

/// Which stack, from which template, with which parameters.
#[derive(clap::Args, Clone)]
pub struct StackFlags {
    /// The CloudFormation stack's name.
    #[arg(long, default_value = "hitsave")]
    pub stack: String,
    /// The template, relative to the checkout.
    #[arg(long, default_value = template::SOURCE)]
    pub template: Utf8PathBuf,
    /// A template parameter, KEY=VALUE (repeat it); one not given keeps its value in the
    /// stack (or the template's default).
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
}

#[derive(clap::Subcommand)]
enum Aws {
    /// Print the template CloudFormation is given (the policies and user data filled in).
    Template {
        #[arg(long, default_value = template::SOURCE)]
        template: Utf8PathBuf,
    },
    /// Show what applying the template would change, and change nothing.
    Plan {
        #[command(flatten)]
        stack: StackFlags,
    },
    /// Apply the template through a change set and follow it to the end.
    Apply {
        #[command(flatten)]
        stack: StackFlags,
        /// Let the change delete or replace this bucket or data volume (its logical id, e.g.
        /// ProductionData); repeat it for each. Without it such a change is refused.
        #[arg(long, value_name = "LOGICAL_ID")]
        allow_replace: Vec<String>,
    },
    /// Print the stack's outputs as KEY=VALUE lines (role ARNs, the store URL, ...).
    Outputs {
        /// The CloudFormation stack's name.
        #[arg(long, default_value = "hitsave")]
        stack: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}

pub fn run(root: &Utf8Path, args: Args) -> anyhow::Result<()> {
    match args.command {
        Aws::Template { template } => {
            let rendered = template::render(root, &template)?;
            for warning in &rendered.warnings {
                eprintln!("xtask: aws: {warning}");
            }
            println!("{}", serde_json::to_string_pretty(&rendered.template)?);
            Ok(())
        }
        Aws::Plan { stack } => {
            let rendered = rendered(root, &stack.template)?;
            stack::plan(&stack, &rendered)
        }
        Aws::Apply {
            stack,
            allow_replace,
        } => {
            let rendered = rendered(root, &stack.template)?;
            stack::apply(&stack, &rendered, &allow_replace)
        }
        Aws::Outputs { stack, json } => {
            let outputs = stack::outputs(&stack)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::Value::Object(
                        outputs
                            .into_iter()
                            .map(|(k, v)| (k, serde_json::Value::String(v)))
                            .collect()
                    ))?
                );
            } else {
                for (k, v) in outputs {
                    println!("{k}={v}");
                }
            }
            Ok(())
        }
    }
}

fn rendered(root: &Utf8Path, path: &Utf8Path) -> anyhow::Result<template::Rendered> {
    let rendered = template::render(root, path).with_context(|| format!("cannot render {path}"))?;
    for warning in &rendered.warnings {
        eprintln!("xtask: aws: {warning}");
    }
    Ok(rendered)
}
