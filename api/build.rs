// The release pipeline bakes the release id and commit into the binary through these
// variables; rebuild when they change so a binary never reports a stale release.
fn main() {
    println!("cargo:rerun-if-env-changed=HITSAVE_RELEASE");
    println!("cargo:rerun-if-env-changed=HITSAVE_COMMIT");
}
