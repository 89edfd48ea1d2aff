//! Which backups are kept: the newest few, the newest of each day for a few weeks, and the
//! ones that must stay whatever their age (the last one history names, the last one that
//! passed its restore drill). The same rule prunes the host's `backups/` and this host's in
//! the store (`backups/<env>/<host>/`, and the flat `backups/` ones it made before that
//! layout): another host's or environment's backups are never touched.

use std::collections::BTreeSet;

use anyhow::Context;

use crate::kit::store::Store;
use crate::kit::ui::Ui;
use crate::site::history::Action;
use crate::site::host::Host;
use hitsave_schema::BackupId;

/// How many backups are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keep the newest N backups ...
    pub keep: usize,
    /// ... and the newest of each UTC day for the last D days.
    pub days: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention { keep: 7, days: 14 }
    }
}

/// The ids (sorted, so oldest first: they start with their UTC time) that `retention` lets go
/// on `today` (days since the epoch); `pinned` are never let go.
pub fn expired(
    ids: &[BackupId],
    retention: Retention,
    today: u64,
    pinned: &BTreeSet<BackupId>,
) -> Vec<BackupId> {
    let mut keep: BTreeSet<&BackupId> = ids.iter().rev().take(retention.keep).collect();
    let mut days_seen = BTreeSet::new();
    for id in ids.iter().rev() {
        let Some(day) = day_of(id) else {
            keep.insert(id); // Not a name this program gives: not ours to remove.
            continue;
        };
        if today.saturating_sub(day) < retention.days && days_seen.insert(day) {
            keep.insert(id);
        }
    }
    ids.iter()
        .filter(|id| !keep.contains(id) && !pinned.contains(*id))
        .cloned()
        .collect()
}

/// Days since the epoch of a backup id's `YYYYMMDD`.
fn day_of(id: &str) -> Option<u64> {
    let (y, m, d) = (id.get(0..4)?, id.get(4..6)?, id.get(6..8)?);
    let midnight = humantime::parse_rfc3339(&format!("{y}-{m}-{d}T00:00:00Z")).ok()?;
    Some(
        midnight
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs()
            / 86_400,
    )
}

fn today() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// What must stay: the newest backup an install took before migrating (the last good
/// state), the newest one restored, and the last one whose drill passed.
fn pinned(host: &Host) -> BTreeSet<BackupId> {
    let mut pinned = BTreeSet::new();
    if let Ok(history) = host.history() {
        for action in [Action::Install, Action::Restore] {
            pinned.extend(
                history
                    .iter()
                    .rev()
                    .filter(|e| e.action == action)
                    .find_map(|e| e.backup.clone()),
            );
        }
    }
    if let Some((id, _)) = crate::database::archive::last_verified(host) {
        pinned.insert(id);
    }
    pinned
}

/// Prunes the host's backups and, when given, this host's in the store (of environment
/// `env`); records go before their dumps, so a record never names a missing dump.
pub fn prune(
    ui: &Ui,
    host: &Host,
    store: Option<&dyn Store>,
    retention: Retention,
    env: &str,
) -> anyhow::Result<()> {
    let pinned = pinned(host);
    let dir = host.backups_dir();
    let local = crate::database::archive::ids(&dir)?;
    // Flat store backups are this host's when it has their record: it made them there.
    let flat_ours: BTreeSet<BackupId> = local.iter().cloned().collect();
    let gone = expired(&local, retention, today(), &pinned);
    for id in &gone {
        for suffix in ["json", "dump", "verified"] {
            let path = dir.join(format!("{id}.{suffix}"));
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot remove {path}"));
                }
                _ => {}
            }
        }
    }
    if !gone.is_empty() {
        ui.info(&format!(
            "pruned backups {} on the host",
            BackupId::list(&gone)
        ));
    }
    let Some(store) = store else {
        return Ok(());
    };
    let own = hitsave_schema::backups_dir(env, Some(&host.id()?));
    let mut stored = crate::database::archive::stored_in(store, &own)?;
    // The flat ones are best effort: a role of the new layout may not list or delete there.
    match crate::database::archive::stored_in(store, hitsave_schema::BACKUPS) {
        Ok(flat) => stored.extend(flat.into_iter().filter(|s| flat_ours.contains(&s.id))),
        Err(e) => ui.info(&format!(
            "cannot list the flat backups/ of older hosts ({e:#}); only {own}/ is pruned"
        )),
    }
    stored.sort_by(|a, b| a.id.cmp(&b.id));
    let ids: Vec<BackupId> = stored.iter().map(|s| s.id.clone()).collect();
    let gone = expired(&ids, retention, today(), &pinned);
    for s in stored.iter().filter(|s| gone.contains(&s.id)) {
        store.delete(&s.record_key())?;
        store.delete(&s.dump_key())?;
    }
    if !gone.is_empty() {
        ui.info(&format!(
            "pruned backups {} in {}",
            BackupId::list(&gone),
            store.describe()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_one_a_day_and_the_pinned() {
        let ids: Vec<BackupId> = [
            "20261101T030000Z-scheduled",
            "20261120T030000Z-scheduled",
            "20261130T030000Z-scheduled",
            "20261201T030000Z-scheduled",
            "20261201T100000Z-pre-migrate",
            "20261201T110000Z-manual",
        ]
        .map(|id| BackupId::new(id).unwrap())
        .to_vec();
        let today = day_of("20261201").unwrap();
        let none = BTreeSet::new();
        // Two newest, and one a day for 3 days (Dec 1's newest is among the two).
        let gone = expired(&ids, Retention { keep: 2, days: 3 }, today, &none);
        assert_eq!(
            gone,
            [
                "20261101T030000Z-scheduled",
                "20261120T030000Z-scheduled",
                "20261201T030000Z-scheduled"
            ]
        );
        let pinned = BTreeSet::from([ids[0].clone()]);
        let gone = expired(&ids, Retention { keep: 1, days: 0 }, today, &pinned);
        assert!(!gone.contains(&ids[0]) && gone.len() == 4, "{gone:?}");
        assert!(expired(&ids, Retention::default(), today, &none).is_empty());
    }
}
