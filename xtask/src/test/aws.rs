//! `cargo xtask aws` against moto's CloudFormation on 127.0.0.1 (part of the release suite),
//! with the resources moto makes from a template (the bucket, roles, instance profiles, the
//! security group, log groups, the topic, the volumes; it skips CodeDeploy's and DLM's): `plan`
//! changes nothing; `apply` makes the stack; a second `apply` is a no-op; a change that would
//! delete the release bucket is refused and changes nothing; `outputs` prints the store URL
//! and the role ARNs (of a stack made with CreateStack: moto computes no outputs for a stack
//! made through change sets).

use anyhow::{Context, ensure};
use camino::Utf8Path;

use crate::test::moto::Moto;
use crate::test::release::Tester;

/// An AMI moto knows (moto checks the id, not what it is).
const IMAGE: &str = "ami-12c6146b";

pub(crate) fn scenario(t: &Tester, work: &Utf8Path) -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let env = vec![
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
    ];
    let params = [
        "--param",
        &format!("ImageId={IMAGE}"),
        "--param",
        "AvailabilityZone=us-east-1a",
    ];
    let with = |verb: &str, extra: &[&str]| -> Vec<String> {
        ["aws", verb]
            .iter()
            .chain(params.iter())
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let run = |args: &[String]| -> anyhow::Result<(bool, String)> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        eprintln!("xtask: test: xtask {}", args.join(" "));
        let out = t.command(&args, &env).output()?;
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        eprint!("{said}");
        Ok((out.status.success(), said))
    };

    let (ok, said) = run(&with("plan", &[]))?;
    ensure!(
        ok && said.contains("ReleaseBucket") && said.contains("nothing was changed"),
        "aws plan:\n{said}"
    );
    let (gone, _) = run(&["aws".into(), "outputs".into()])?;
    ensure!(!gone, "a plan left a stack behind");

    let (ok, said) = run(&with("apply", &[]))?;
    ensure!(ok && said.contains("CREATE_COMPLETE"), "aws apply:\n{said}");
    let made = resources(&moto)?;
    for (id, kind) in [
        ("ReleaseBucket", "AWS::S3::Bucket"),
        ("CiReleaseRole", "AWS::IAM::Role"),
        ("HostProductionProfile", "AWS::IAM::InstanceProfile"),
        ("HostSecurityGroup", "AWS::EC2::SecurityGroup"),
        ("ProductionLogs", "AWS::Logs::LogGroup"),
        ("ProductionData", "AWS::EC2::Volume"),
    ] {
        ensure!(
            made.iter().any(|(i, k, _)| i == id && k == kind),
            "the stack has no {id} ({kind}): {made:?}"
        );
    }
    bucket_is_locked_down(&moto)?;

    let (ok, said) = run(&with("apply", &[]))?;
    ensure!(
        ok && said.contains("up to date: nothing to change"),
        "a second apply:\n{said}"
    );

    // Renaming the bucket's logical id would delete the bucket (and make another).
    let source = std::fs::read_to_string(t.root().join(crate::aws::template::SOURCE))?;
    let renamed = work.join("renamed.cfn.yml");
    std::fs::write(&renamed, source.replace("ReleaseBucket", "ReleasesBucket"))?;
    let (ok, said) = run(&with("apply", &["--template", renamed.as_str()]))?;
    ensure!(
        !ok && said.contains("delete ReleaseBucket")
            && said.contains("--allow-replace ReleaseBucket")
            && said.contains("nothing was changed"),
        "an apply that deletes the bucket:\n{said}"
    );
    ensure!(
        resources(&moto)? == made,
        "the refused apply changed the stack"
    );

    // In a moto of its own: the roles' names are the account's.
    let other = Moto::start()?;
    create_stack(t, &other, "hitsave-outputs")?;
    let mut other_env = env.clone();
    other_env[0].1 = other.endpoint.clone();
    eprintln!("xtask: test: xtask aws outputs --stack hitsave-outputs");
    let out = t
        .command(
            &["aws", "outputs", "--stack", "hitsave-outputs"],
            &other_env,
        )
        .output()?;
    let (ok, said) = (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    );
    ensure!(
        ok && said.contains("StoreUrl=s3://hitsave-outputs/hitsave")
            && said.contains("ReleaseRoleArn=arn:aws:iam::")
            && said.contains("NotificationTopicArn=arn:aws:sns:"),
        "aws outputs:\n{said}"
    );
    eprintln!(
        "xtask: test: aws: plan changed nothing; apply made the stack ({} resources in moto); a second apply was a no-op; deleting the bucket was refused; outputs printed",
        made.len()
    );
    Ok(())
}

/// A stack of the rendered template made directly (CreateStack), for its outputs.
fn create_stack(t: &Tester, moto: &Moto, name: &str) -> anyhow::Result<()> {
    use aws_sdk_cloudformation::types::{Capability, Parameter};
    let rendered =
        crate::aws::template::render(t.root(), Utf8Path::new(crate::aws::template::SOURCE))?;
    let body = serde_json::to_string(&rendered.template)?;
    runtime()?.block_on(async {
        let parameter = |k: &str, v: &str| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        };
        cloudformation(moto)
            .create_stack()
            .stack_name(name)
            .template_body(body)
            .parameters(parameter("ImageId", IMAGE))
            .parameters(parameter("AvailabilityZone", "us-east-1a"))
            .parameters(parameter("BucketName", "hitsave-outputs"))
            .capabilities(Capability::CapabilityNamedIam)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("{}", aws_sdk_cloudformation::error::DisplayErrorContext(&e))
            })
            .context("cannot create the outputs' stack")?;
        Ok(())
    })
}

fn cloudformation(moto: &Moto) -> aws_sdk_cloudformation::Client {
    aws_sdk_cloudformation::Client::from_conf(
        aws_sdk_cloudformation::Config::builder()
            .behavior_version(aws_sdk_cloudformation::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudformation::config::Region::new("us-east-1"))
            .endpoint_url(&moto.endpoint)
            .credentials_provider(aws_sdk_cloudformation::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .build(),
    )
}

/// The stack's resources: (logical id, type, physical id), sorted.
fn resources(moto: &Moto) -> anyhow::Result<Vec<(String, String, String)>> {
    runtime()?.block_on(async {
        let found = cloudformation(moto)
            .describe_stack_resources()
            .stack_name("hitsave")
            .send()
            .await
            .context("cannot read the stack's resources")?;
        let mut out: Vec<_> = found
            .stack_resources()
            .iter()
            .map(|r| {
                (
                    r.logical_resource_id().unwrap_or_default().to_owned(),
                    r.resource_type().unwrap_or_default().to_owned(),
                    r.physical_resource_id().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        out.sort();
        Ok(out)
    })
}

/// The bucket moto made is encrypted (moto applies a template bucket's encryption and tags
/// only; its public access block, versioning and Object Lock are checkov's to check).
fn bucket_is_locked_down(moto: &Moto) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .endpoint_url(&moto.endpoint)
                .force_path_style(true)
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    "test", "test", None, None, "test",
                ))
                .build(),
        );
        let encryption = s3
            .get_bucket_encryption()
            .bucket("hitsave-releases")
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)))
            .context("the bucket has no encryption")?;
        let said = format!("{encryption:?}");
        ensure!(said.contains("Aes256"), "the bucket's encryption: {said}");
        Ok(())
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
