//! The user data's data-volume section (deploy/aws/user-data.sh, between its BEGIN and END
//! data-volume lines) on a loop device standing in for the EBS volume (part of the install
//! suite; needs root): the first boot makes the filesystem and the database is made on it; a
//! second "instance" (the volume detached and attached again, a fresh fstab and host.env)
//! mounts it without formatting and the rows are there; a volume with a foreign filesystem is
//! never formatted (the script stops, naming it). Then the stack on it: a host whose settings
//! name the mounted volume (HITSAVE_DATA_DIR) keeps the database's files there; the volume
//! moved to a new instance (its secrets restored by the operator), the install there serves
//! the old rows; `doctor` says where the files are; and a host whose database is in a Docker
//! volume already refuses the setting instead of losing the database.

use std::process::Command;

use anyhow::{Context, ensure};
use camino::{Utf8Path, Utf8PathBuf};

use crate::test::install::Harness;
use crate::test::postgres::TestPostgres;

/// A loop device on an image file, detached when dropped.
struct Loop(String);

impl Loop {
    fn attach(image: &Utf8Path) -> anyhow::Result<Loop> {
        let dev = duct::cmd!("losetup", "--find", "--show", image)
            .read()
            .context("cannot attach a loop device (the test needs root)")?;
        Ok(Loop(dev.trim().to_owned()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = duct::cmd!("losetup", "-d", &self.0).unchecked().run();
    }
}

/// One "instance": its own fstab and host.env; the volume mounted at `data`.
struct Instance {
    fstab: Utf8PathBuf,
    host_env: Utf8PathBuf,
    data: Utf8PathBuf,
}

impl Instance {
    fn new(work: &Utf8Path, name: &str) -> anyhow::Result<Instance> {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("fstab"), "# the instance's own lines\n")?;
        Ok(Instance {
            fstab: dir.join("fstab"),
            host_env: dir.join("host.env"),
            data: work.join("data"),
        })
    }

    /// Runs the section for `device`; its status and what it said.
    fn boot(&self, section: &str, device: &str) -> anyhow::Result<(bool, String)> {
        let script = format!("set -eu\ntag() {{ return 1; }}\n{section}");
        let out = Command::new("sh")
            .args(["-c", &script])
            .env("HITSAVE_DATA_VOLUME", "vol-0123456789abcdef0")
            .env("HITSAVE_DATA_DEVICE", device)
            .env("HITSAVE_DATA_DIR", &self.data)
            .env("HITSAVE_FSTAB", &self.fstab)
            .env("HITSAVE_HOST_ENV", &self.host_env)
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        ))
    }

    fn unmount(&self) {
        let _ = duct::cmd!("umount", &self.data).unchecked().run();
    }
}

pub(crate) fn scenario(root: &Utf8Path, h: &Harness, release: &str) -> anyhow::Result<()> {
    // Under /tmp: PostgreSQL runs as its own user, who cannot reach the target directory.
    let tmp = tempfile::Builder::new()
        .prefix("hitsave-data-volume-")
        .tempdir()?;
    let work = Utf8Path::from_path(tmp.path()).context("a non-UTF-8 temporary path")?;
    let text = std::fs::read_to_string(root.join("deploy/aws/user-data.sh"))?;
    let section = text
        .split("# BEGIN data-volume\n")
        .nth(1)
        .and_then(|rest| rest.split("# END data-volume\n").next())
        .context("deploy/aws/user-data.sh has no data-volume section")?;
    host_settings(&text, work)?;
    let result = boots(section, work).and_then(|()| stack(root, h, release, section, work));
    let _ = duct::cmd!("umount", work.join("data")).unchecked().run();
    result
}

/// The user data's host-settings section: the stack's tag adds what host.env lacks, never
/// overrides an operator's line, and ignores a word that is not a HITSAVE_ setting.
fn host_settings(user_data: &str, work: &Utf8Path) -> anyhow::Result<()> {
    let section = user_data
        .split("# BEGIN host-settings\n")
        .nth(1)
        .and_then(|rest| rest.split("# END host-settings\n").next())
        .context("deploy/aws/user-data.sh has no host-settings section")?;
    let host_env = work.join("settings.env");
    std::fs::write(&host_env, "HITSAVE_LOGS_GROUP=the-operators\n")?;
    let tag = "HITSAVE_LOGS_GROUP=hitsave-production HITSAVE_LOGS_REGION=eu-west-1 rm=-rf HITSAVE_NOTIFY_SNS_TOPIC=arn:aws:sns:eu-west-1:123456789012:hitsave-notifications";
    let script = format!(
        "set -eu\ntag() {{ [ \"$1\" = hitsave-settings ] && echo '{tag}'; }}\n{section}{section}"
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .env("HITSAVE_HOST_ENV", &host_env)
        .output()?;
    let said = String::from_utf8_lossy(&out.stderr);
    let written = std::fs::read_to_string(&host_env)?;
    ensure!(
        out.status.success()
            && written
                == "HITSAVE_LOGS_GROUP=the-operators\nHITSAVE_LOGS_REGION=eu-west-1\nHITSAVE_NOTIFY_SNS_TOPIC=arn:aws:sns:eu-west-1:123456789012:hitsave-notifications\n"
            && said.contains("'rm=-rf', not a HITSAVE_ setting: ignored"),
        "host.env from the stack's tag (run twice):\n{written}\n{said}"
    );
    eprintln!(
        "xtask: test: host settings: the stack's tag added what host.env lacked, kept the operator's line, ignored a stray word, and added nothing the second time"
    );
    Ok(())
}

/// The stack's database on the volume, across two instances.
fn stack(
    root: &Utf8Path,
    h: &Harness,
    release: &str,
    section: &str,
    work: &Utf8Path,
) -> anyhow::Result<()> {
    let image = work.join("stack.img");
    std::fs::File::create(&image)?.set_len(512 << 20)?;
    let first = Instance::new(work, "stack-first")?;
    let data = first.data.as_str();

    // A host whose database is in a Docker volume: the setting is refused, nothing changes.
    let out = h.install(release, &["--data-dir", data])?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && said.contains("an install does not move a database"),
        "an install that would move the database:\n{said}"
    );
    h.expect_serving(release)?;
    let doctor =
        String::from_utf8_lossy(&h.t.command(&h.host_args(&["doctor"]), &[]).output()?.stdout)
            .into_owned();
    ensure!(
        doctor.contains("on the root disk"),
        "doctor on the test host:\n{doctor}"
    );

    let volume = Loop::attach(&image)?;
    let (ok, said) = first.boot(section, &volume.0)?;
    ensure!(ok, "the boot:\n{said}");
    let project = format!("hitsave-datavol-{}", std::process::id());
    let (mut one, cleanup) = Harness::fresh_as(root, "datavol-one", &project)?;
    one.store = h.store.clone();
    let out = one.install(release, &["--data-dir", data])?;
    ensure!(
        out.status.success(),
        "an install with its database on the data volume:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = first.data.join(&project).join("db");
    ensure!(
        files.join("PG_VERSION").is_file(),
        "the database's files are not in {files}"
    );
    let doctor = String::from_utf8_lossy(
        &one.t
            .command(&one.host_args(&["doctor"]), &[])
            .output()?
            .stdout,
    )
    .into_owned();
    ensure!(
        doctor.contains(&format!(
            "the database's files are in {files}, off the root disk"
        )),
        "doctor on the data volume host:\n{doctor}"
    );
    one.db_count("WITH i AS (INSERT INTO waitlist (email) VALUES ('kept@example.com') RETURNING 1) SELECT count(*) FROM i")?;
    // The instance goes: its containers and the Docker volume object with it, the files stay.
    drop(cleanup);
    first.unmount();
    drop(volume);

    let second = Instance::new(work, "stack-second")?;
    let volume = Loop::attach(&image)?;
    let (ok, said) = second.boot(section, &volume.0)?;
    ensure!(ok, "the new instance's boot:\n{said}");
    let (mut two, cleanup) = Harness::fresh_as(root, "datavol-two", &project)?;
    two.store = h.store.clone();
    // The operator puts the host's secrets back (the database's password is in the database).
    std::fs::copy(
        one.host_root.join("secrets/postgres_password"),
        two.host_root.join("secrets/postgres_password"),
    )?;
    let out = two.install(release, &["--data-dir", data])?;
    ensure!(
        out.status.success(),
        "the new instance's install:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept = two.db_count("SELECT count(*) FROM waitlist WHERE email = 'kept@example.com'")?;
    ensure!(kept == 1, "the new instance's database lost the row");
    two.expect_serving(release)?;
    drop(cleanup);
    second.unmount();
    eprintln!(
        "xtask: test: data volume: a host with HITSAVE_DATA_DIR keeps its database in {files} (doctor says so); the volume moved to a new instance, whose install serves the old row; a host whose database is in a Docker volume refuses the setting and keeps serving"
    );
    Ok(())
}

fn boots(section: &str, work: &Utf8Path) -> anyhow::Result<()> {
    let image = work.join("volume.img");
    std::fs::File::create(&image)?.set_len(256 << 20)?;

    // The first instance: a blank volume gets HitSave's filesystem, and the database.
    let first = Instance::new(work, "first")?;
    let volume = Loop::attach(&image)?;
    let (ok, said) = first.boot(section, &volume.0)?;
    ensure!(ok, "the first boot:\n{said}");
    let uuid = blkid(&volume.0, "UUID")?;
    ensure!(
        blkid(&volume.0, "LABEL")? == "hitsave-data" && !uuid.is_empty(),
        "the first boot made no HitSave filesystem"
    );
    let fstab = std::fs::read_to_string(&first.fstab)?;
    ensure!(
        fstab.contains(&format!("UUID={uuid} {} ext4 defaults,nofail", first.data)),
        "fstab: {fstab}"
    );
    ensure!(
        std::fs::read_to_string(&first.host_env)?
            .contains(&format!("HITSAVE_DATA_DIR={}", first.data)),
        "host.env does not name the data directory"
    );
    let (ok, said) = first.boot(section, &volume.0)?;
    ensure!(
        ok && std::fs::read_to_string(&first.fstab)?
            .matches(&uuid)
            .count()
            == 1,
        "the same boot again:\n{said}"
    );
    let cluster = first.data.join("db");
    {
        let pg = TestPostgres::start_in(cluster.clone(), true)?;
        pg.psql(
            "postgres",
            "CREATE TABLE waitlist (email text); INSERT INTO waitlist VALUES ('ada@example.com'), ('grace@example.com')",
        )?;
    }
    first.unmount();
    drop(volume);

    // The instance is gone; a new one gets the same volume, maybe under another name.
    let second = Instance::new(work, "second")?;
    let volume = Loop::attach(&image)?;
    let (ok, said) = second.boot(section, &volume.0)?;
    ensure!(ok, "the second instance's boot:\n{said}");
    ensure!(
        blkid(&volume.0, "UUID")? == uuid,
        "the second instance formatted the volume again"
    );
    let rows = {
        let pg = TestPostgres::start_in(cluster, true)?;
        pg.psql(
            "postgres",
            "SELECT string_agg(email, ',' ORDER BY email) FROM waitlist",
        )?
    };
    ensure!(
        rows == "ada@example.com,grace@example.com",
        "the database on the volume after the move: {rows:?}"
    );
    second.unmount();
    drop(volume);

    // A volume with somebody else's filesystem: neither formatted nor mounted.
    let foreign = work.join("foreign.img");
    std::fs::File::create(&foreign)?.set_len(64 << 20)?;
    let other = Loop::attach(&foreign)?;
    duct::cmd!("mkfs.ext2", "-q", "-L", "scratch", &other.0).run()?;
    let before = blkid(&other.0, "UUID")?;
    let third = Instance::new(work, "third")?;
    let (ok, said) = third.boot(section, &other.0)?;
    ensure!(
        !ok && said.contains("not HitSave's") && said.contains("not formatted"),
        "a volume with an ext2 filesystem:\n{said}"
    );
    ensure!(
        blkid(&other.0, "TYPE")? == "ext2" && blkid(&other.0, "UUID")? == before,
        "the foreign volume was changed"
    );
    ensure!(
        !duct::cmd!("mountpoint", "-q", &third.data)
            .unchecked()
            .run()?
            .status
            .success(),
        "the foreign volume was mounted"
    );
    eprintln!(
        "xtask: test: data volume: the first boot made HitSave's filesystem (UUID {uuid}, in fstab with nofail) and the database on it; a new instance mounted it without formatting and read its 2 rows; a volume with an ext2 filesystem was neither formatted nor mounted"
    );
    Ok(())
}

fn blkid(device: &str, field: &str) -> anyhow::Result<String> {
    Ok(
        duct::cmd!("blkid", "-p", "-o", "value", "-s", field, device)
            .unchecked()
            .read()?
            .trim()
            .to_owned(),
    )
}
