//! The schema this binary was built with (the migrations embedded from `migrations/`) compared
//! with what the database has applied.

use sqlx::migrate::{Migration, Migrator};
use sqlx::{PgConnection, Row};

/// Every migration in `migrations/`, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// sqlx's bookkeeping table, in the connection's default schema.
pub const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// One row of the database's migration history.
#[derive(Debug, Clone)]
pub struct AppliedMigration {
    pub version: i64,
    pub description: String,
    pub checksum: Vec<u8>,
    /// False when a migration started but did not finish (only possible for migrations that
    /// run outside a transaction).
    pub success: bool,
}

/// What the database has applied, oldest first; empty when it has never been migrated.
pub async fn applied(conn: &mut PgConnection) -> Result<Vec<AppliedMigration>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(MIGRATIONS_TABLE)
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT version, description, checksum, success FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(AppliedMigration {
                version: r.try_get("version")?,
                description: r.try_get("description")?,
                checksum: r.try_get("checksum")?,
                success: r.try_get("success")?,
            })
        })
        .collect()
}

/// The difference between the embedded migrations and the database's history.
#[derive(Debug, Default)]
pub struct SchemaReport {
    /// Embedded, applied successfully and unchanged.
    pub applied: Vec<(i64, String)>,
    /// Embedded but not applied yet.
    pub pending: Vec<(i64, String)>,
    /// Applied, but the embedded file's checksum differs: someone edited a released migration.
    pub modified: Vec<(i64, String)>,
    /// Applied by a binary that knows migrations this one does not (a newer release).
    pub unknown: Vec<(i64, String)>,
    /// Started and never finished.
    pub failed: Vec<(i64, String)>,
}

impl SchemaReport {
    pub fn compare(embedded: &Migrator, applied: &[AppliedMigration]) -> Self {
        let mut report = SchemaReport::default();
        let embedded: Vec<&Migration> = embedded
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .collect();
        for m in &embedded {
            let entry = (m.version, m.description.to_string());
            match applied.iter().find(|a| a.version == m.version) {
                None => report.pending.push(entry),
                Some(a) if !a.success => report.failed.push(entry),
                Some(a) if a.checksum != *m.checksum => report.modified.push(entry),
                Some(_) => report.applied.push(entry),
            }
        }
        for a in applied {
            if !embedded.iter().any(|m| m.version == a.version) {
                let entry = (a.version, a.description.clone());
                if a.success {
                    report.unknown.push(entry);
                } else {
                    report.failed.push(entry);
                }
            }
        }
        report
    }

    /// The API may serve when every migration it was built with is in place. Migrations it does
    /// not know are fine: they come from a newer release, which is what makes rollback possible.
    pub fn ready_for_this_binary(&self) -> Result<(), String> {
        if let Some((v, d)) = self.failed.first() {
            return Err(format!("migration {v} ({d}) did not finish"));
        }
        if !self.pending.is_empty() {
            let list: Vec<String> = self
                .pending
                .iter()
                .map(|(v, d)| format!("{v} ({d})"))
                .collect();
            return Err(format!("migrations not applied yet: {}", list.join(", ")));
        }
        Ok(())
    }

    pub fn up_to_date(&self) -> bool {
        self.pending.is_empty() && self.failed.is_empty()
    }

    /// Applied history that disagrees with this binary: edited or unknown migrations.
    pub fn drifted(&self) -> bool {
        !self.modified.is_empty() || !self.unknown.is_empty() || !self.failed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied_all() -> Vec<AppliedMigration> {
        MIGRATOR
            .iter()
            .map(|m| AppliedMigration {
                version: m.version,
                description: m.description.to_string(),
                checksum: m.checksum.to_vec(),
                success: true,
            })
            .collect()
    }

    #[test]
    fn fresh_database_has_everything_pending() {
        let r = SchemaReport::compare(&MIGRATOR, &[]);
        assert_eq!(r.pending.len(), MIGRATOR.iter().count());
        assert!(!r.up_to_date());
        assert!(
            r.ready_for_this_binary()
                .unwrap_err()
                .contains("not applied")
        );
    }

    #[test]
    fn fully_migrated_database_is_ready() {
        let r = SchemaReport::compare(&MIGRATOR, &applied_all());
        assert!(r.up_to_date());
        assert!(!r.drifted());
        assert!(r.ready_for_this_binary().is_ok());
    }

    #[test]
    fn newer_database_is_ready_but_drifted() {
        let mut applied = applied_all();
        applied.push(AppliedMigration {
            version: 99_990_101_000_000,
            description: "from the future".into(),
            checksum: vec![0; 48],
            success: true,
        });
        let r = SchemaReport::compare(&MIGRATOR, &applied);
        assert!(r.ready_for_this_binary().is_ok());
        assert_eq!(r.unknown.len(), 1);
        assert!(r.drifted());
    }

    #[test]
    fn edited_migration_is_reported() {
        let mut applied = applied_all();
        applied[1].checksum[0] ^= 0xff;
        let r = SchemaReport::compare(&MIGRATOR, &applied);
        assert_eq!(r.modified.len(), 1);
        assert_eq!(r.modified[0].0, applied[1].version);
    }
}
