//! deploy/aws/hitsave.cfn.yml made into the template CloudFormation takes: each
//! `{HitSave::File: NAME}` becomes the policy in deploy/aws/NAME, its placeholders (ACCOUNT_ID,
//! REGION, the bucket, the repository) turned into `Fn::Sub` variables; each
//! `{HitSave::UserData: NAME}` becomes that script, base64'd by CloudFormation, with the store
//! and the keys filled in (deploy/keys/*.pub; deploy/keys/preview/*.pub on a preview host) and
//! its comment lines left out (EC2 takes 16 KiB). So the policies and the user data stay in
//! one place each, the files parliament, the trust-model tests and the runbook read.

use anyhow::{Context, bail, ensure};
use camino::Utf8Path;
use serde_json::{Map, Value, json};
use yaml_rust2::{Yaml, YamlLoader};

/// The template's path in the checkout.
pub const SOURCE: &str = "deploy/aws/hitsave.cfn.yml";
/// EC2 takes at most this many bytes of user data (before base64).
const USER_DATA_MAX: usize = 16 * 1024;
/// What the policy files and the user data say, and what the stack says instead.
const PLACEHOLDERS: &[(&str, &str)] = &[
    ("ACCOUNT_ID", "${AWS::AccountId}"),
    ("REGION", "${AWS::Region}"),
    ("hitsave-releases", "${BucketName}"),
    ("hitsave-io/hitsave", "${Repository}"),
];

/// The rendered template (`path`, relative to `root`), and what it left for the operator.
pub struct Rendered {
    pub template: Value,
    pub warnings: Vec<String>,
}

/// Renders the template at `path` of the checkout at `root`.
pub fn render(root: &Utf8Path, path: &Utf8Path) -> anyhow::Result<Rendered> {
    let text =
        std::fs::read_to_string(root.join(path)).with_context(|| format!("cannot read {path}"))?;
    let docs = YamlLoader::load_from_str(&text).with_context(|| format!("{path} is not YAML"))?;
    let doc = docs
        .into_iter()
        .next()
        .with_context(|| format!("{path} is empty"))?;
    let mut warnings = Vec::new();
    let template = expand(root, to_json(&doc)?, &mut warnings)?;
    ensure!(template["Resources"].is_object(), "{path} has no Resources");
    Ok(Rendered { template, warnings })
}

fn to_json(yaml: &Yaml) -> anyhow::Result<Value> {
    Ok(match yaml {
        Yaml::Real(s) => json!(
            s.parse::<f64>()
                .with_context(|| format!("{s} is no number"))?
        ),
        Yaml::Integer(i) => json!(i),
        Yaml::String(s) => json!(s),
        Yaml::Boolean(b) => json!(b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Yaml::Hash(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    other => bail!("a key that is not a string: {other:?}"),
                };
                out.insert(key, to_json(v)?);
            }
            Value::Object(out)
        }
        Yaml::Null => Value::Null,
        other => bail!("YAML the template cannot hold: {other:?}"),
    })
}

/// Replaces every `HitSave::*` node below `value`.
fn expand(root: &Utf8Path, value: Value, warnings: &mut Vec<String>) -> anyhow::Result<Value> {
    Ok(match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("HitSave::File") => {
            let name = map["HitSave::File"]
                .as_str()
                .context("HitSave::File names a file")?;
            policy(root, name)?
        }
        Value::Object(map) if map.len() == 1 && map.contains_key("HitSave::UserData") => {
            let name = map["HitSave::UserData"]
                .as_str()
                .context("HitSave::UserData names a file")?;
            user_data(root, name, warnings)?
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| Ok((k, expand(root, v, warnings)?)))
                .collect::<anyhow::Result<_>>()?,
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| expand(root, v, warnings))
                .collect::<anyhow::Result<_>>()?,
        ),
        other => other,
    })
}

/// A file name under deploy/aws/, nothing else.
fn file(root: &Utf8Path, name: &str) -> anyhow::Result<String> {
    ensure!(
        !name.contains('/') && !name.starts_with('.'),
        "HitSave::File names a file of deploy/aws/, not {name:?}"
    );
    let path = root.join("deploy/aws").join(name);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))
}

/// The policy in deploy/aws/`name`, each string with a placeholder made an `Fn::Sub`.
fn policy(root: &Utf8Path, name: &str) -> anyhow::Result<Value> {
    let document: Value = serde_json::from_str(&file(root, name)?)
        .with_context(|| format!("deploy/aws/{name} is not JSON"))?;
    Ok(substitute(document))
}

fn substitute(value: Value) -> Value {
    match value {
        Value::String(s) if PLACEHOLDERS.iter().any(|(p, _)| s.contains(p)) => {
            let sub = PLACEHOLDERS.iter().fold(s, |s, (placeholder, variable)| {
                s.replace(placeholder, variable)
            });
            json!({ "Fn::Sub": sub })
        }
        Value::Array(items) => Value::Array(items.into_iter().map(substitute).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, substitute(v))).collect())
        }
        other => other,
    }
}

/// The script deploy/aws/`name` as the instances' user data: the store in the stack's bucket,
/// the release keys of deploy/keys/ in place of the paste-here block.
fn user_data(root: &Utf8Path, name: &str, warnings: &mut Vec<String>) -> anyhow::Result<Value> {
    let script = file(root, name)?;
    let paste = "cat > /etc/hitsave/keys/release.pub <<'KEY'\nuntrusted comment: REPLACE this file with hitsave-release.key.pub\nREPLACE\nKEY\nchmod 0644 /etc/hitsave/keys/release.pub\n";
    ensure!(
        script.contains(paste),
        "deploy/aws/{name} has no key block to fill in"
    );
    let (release, preview) = (
        keys(root, "deploy/keys")?,
        keys(root, "deploy/keys/preview")?,
    );
    let script = if release.is_empty() {
        warnings.push("deploy/keys/ has no public key (*.pub): the hosts will refuse every deployment until one is in /etc/hitsave/keys/ (docs/aws-setup.md, \"Signing keys\")".into());
        script
    } else {
        let written = format!(
            "if [ \"$role\" = preview ]; then\n{}else\n{}fi\n",
            write_keys(&preview),
            write_keys(&release)
        );
        script.replace(paste, &written)
    };
    let script = without_comments(&script);
    ensure!(
        script.len() <= USER_DATA_MAX,
        "deploy/aws/{name} with its keys is {} bytes; EC2 takes at most {USER_DATA_MAX}",
        script.len()
    );
    // Fn::Sub reads ${...}: the shell's are written ${!...} to stay as they are.
    let script = script.replace("${", "${!").replace(
        "HITSAVE_STORE=s3://hitsave-releases/",
        "HITSAVE_STORE=s3://${BucketName}/",
    );
    Ok(json!({ "Fn::Base64": { "Fn::Sub": script } }))
}

/// Shell lines that write `keys` into /etc/hitsave/keys/ (`true` when there are none).
fn write_keys(keys: &[(String, String)]) -> String {
    if keys.is_empty() {
        return "true\n".into();
    }
    keys.iter()
        .map(|(file, key)| {
            format!(
                "cat > /etc/hitsave/keys/{file} <<'KEY'\n{}\nKEY\nchmod 0644 /etc/hitsave/keys/{file}\n",
                key.trim_end()
            )
        })
        .collect()
}

/// The script without its whole-line comments (the `#!` line and here-documents kept as
/// they are).
fn without_comments(script: &str) -> String {
    let mut out = String::new();
    let mut until: Option<String> = None;
    for line in script.lines() {
        match &until {
            Some(end) if line == end => until = None,
            Some(_) => {}
            None if line.trim_start().starts_with('#') && !line.starts_with("#!") => continue,
            None => {
                if let Some((_, rest)) = line.split_once("<<") {
                    let word: String = rest
                        .trim_start_matches('-')
                        .trim_start_matches('\'')
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !word.is_empty() {
                        until = Some(word);
                    }
                }
            }
        }
        out += line;
        out.push('\n');
    }
    out
}

/// `dir`/*.pub: (file name, contents), by name.
fn keys(root: &Utf8Path, dir: &str) -> anyhow::Result<Vec<(String, String)>> {
    let dir = root.join(dir);
    let mut keys = Vec::new();
    for entry in dir
        .read_dir_utf8()
        .with_context(|| format!("cannot read {dir}"))?
    {
        let entry = entry?;
        if entry.file_name().ends_with(".pub") && entry.path().is_file() {
            let key = std::fs::read_to_string(entry.path())?;
            ensure!(
                key.starts_with("untrusted comment:") && key.lines().count() == 2,
                "{} is not a minisign public key",
                entry.path()
            );
            keys.push((entry.file_name().to_owned(), key));
        }
    }
    keys.sort();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> &'static Utf8Path {
        Utf8Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
    }

    #[test]
    fn every_placeholder_is_filled() {
        let rendered = render(root(), Utf8Path::new(SOURCE)).unwrap();
        assert!(
            !rendered.template.to_string().contains("HitSave::"),
            "a HitSave:: node is left"
        );
        // The parameters' defaults name the bucket and repository; the resources never do.
        let text = rendered.template["Resources"].to_string();
        for (placeholder, _) in PLACEHOLDERS {
            // Only inside Fn::Sub, as a variable, never as a literal value.
            assert!(
                !text.contains(&format!("\"{placeholder}")),
                "{placeholder} is left as a value"
            );
        }
        let role = &rendered.template["Resources"]["CiReleaseRole"]["Properties"];
        let sub = role["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]["StringEquals"]
            ["token.actions.githubusercontent.com:sub"]["Fn::Sub"]
            .as_str()
            .unwrap();
        assert!(
            sub.starts_with("repo:${Repository}:environment:release:"),
            "{sub}"
        );
        let user_data = rendered.template["Resources"]["HostLaunchTemplate"]["Properties"]
            ["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]
            .as_str()
            .unwrap();
        assert!(user_data.contains("HITSAVE_STORE=s3://${BucketName}/hitsave"));
        assert!(
            user_data.contains("${!HITSAVE_STORE:?"),
            "a shell ${{ is not escaped"
        );
        // What the instance runs is still a shell script: `sh -n` reads it without running it.
        let script = user_data
            .replace("${!", "${")
            .replace("${BucketName}", "hitsave-releases");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user-data.sh");
        std::fs::write(&path, &script).unwrap();
        let checked = std::process::Command::new("sh")
            .arg("-n")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "{}",
            String::from_utf8_lossy(&checked.stderr)
        );
        assert!(script.len() < USER_DATA_MAX && !script.contains("\n# BEGIN"));
    }

    #[test]
    fn comments_go_and_here_documents_stay() {
        let script = "#!/bin/sh\n# a comment\nset -eu\n  # indented\ncat > f <<'UNIT'\n# kept: data\nUNIT\necho done # trailing stays\n";
        assert_eq!(
            without_comments(script),
            "#!/bin/sh\nset -eu\ncat > f <<'UNIT'\n# kept: data\nUNIT\necho done # trailing stays\n"
        );
    }

    #[test]
    fn refuses_a_path_outside_deploy_aws() {
        assert!(policy(root(), "../keys/README.md").is_err());
    }
}
