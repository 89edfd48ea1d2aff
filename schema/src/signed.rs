//! What is signed and what the signature's trusted comment says. Every manifest, pointer and
//! input record has a minisign signature beside it (`<key>.minisig`): an Ed25519 signature over the file's
//! exact bytes, made by `cargo xtask release`, checked by the host before it downloads any
//! artifact. The trusted comment is covered by the signature too; it repeats what the document
//! says, so a signature cannot be moved to another document that happens to verify.

use crate::{InputRecord, Manifest, Pointer};

/// `<key>.minisig`: where the signature of the document under `key` is.
pub fn signature_key(key: &str) -> String {
    format!("{key}.minisig")
}

/// The trusted comment of a manifest's signature: release id, commit and commit time.
pub fn manifest_comment(m: &Manifest) -> String {
    format!(
        "hitsave release={} commit={} commit_time={}",
        m.release, m.commit, m.commit_time
    )
}

/// The trusted comment of a pointer's signature: the pointer's own key (so that the channel
/// `main`'s signature does not verify `channels/production.json`) and what it points at.
pub fn pointer_comment(key: &str, p: &Pointer) -> String {
    format!(
        "hitsave pointer={key} release={} commit={}",
        p.release, p.commit
    )
}

/// The trusted comment of an input record's signature: its key and the artifact it names, so
/// a record cannot be pointed at another tarball, or its signature moved to another record.
pub fn input_comment(key: &str, r: &InputRecord) -> String {
    format!("hitsave input={key} sha256={} size={}", r.sha256, r.size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Commit, ReleaseId, SCHEMA};

    #[test]
    fn comments_name_what_is_signed() {
        let p = Pointer {
            schema: SCHEMA,
            release: ReleaseId::new("20261101120000-0123456789ab").unwrap(),
            commit: Commit::new("0123456789abcdef0123456789abcdef01234567").unwrap(),
        };
        assert_eq!(
            pointer_comment("channels/main.json", &p),
            "hitsave pointer=channels/main.json release=20261101120000-0123456789ab commit=0123456789abcdef0123456789abcdef01234567"
        );
        assert_ne!(
            pointer_comment("channels/main.json", &p),
            pointer_comment("channels/production.json", &p)
        );
        assert_eq!(
            signature_key("releases/x/manifest.json"),
            "releases/x/manifest.json.minisig"
        );
    }
}
