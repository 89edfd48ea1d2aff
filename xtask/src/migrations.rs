//! Migrations that are safe on a live database. During a blue/green swap, and after a
//! rollback, the old release keeps serving on the new schema, and a migration that takes a
//! long lock stalls every request. So `release` (and the lint suite) parses every migration
//! with squawk and refuses the statements that lock or break a serving database, naming the
//! file, the line, the rule and the safe way.
//!
//! A statement may break one rule on purpose: a comment above it (or inside it) saying
//! `-- hitsave: allow <rule>: <why>`. squawk's own `squawk-ignore` comments are refused, so
//! every exception carries its reason.

use std::fmt;

use anyhow::Context;
use camino::Utf8Path;
use squawk_linter::{Linter, Rule};
use squawk_syntax::SourceFile;
use squawk_syntax::ast::AstNode;

/// The rules a migration must pass, each with the safe way to get the same result.
const RULES: &[(Rule, &str)] = &[
    (
        Rule::RequireConcurrentIndexCreation,
        "CREATE INDEX CONCURRENTLY, alone in a migration that starts with `-- no-transaction`",
    ),
    (
        Rule::RequireConcurrentIndexDeletion,
        "DROP INDEX CONCURRENTLY, alone in a migration that starts with `-- no-transaction`",
    ),
    (
        Rule::BanConcurrentIndexCreationInTransaction,
        "put the CONCURRENTLY statement alone in a migration that starts with `-- no-transaction`",
    ),
    (
        Rule::AddingRequiredField,
        "add the column nullable or with a DEFAULT; backfill; add NOT NULL in a later release",
    ),
    (
        Rule::AddingNotNullableField,
        "add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it in a later migration, then SET NOT NULL",
    ),
    (
        Rule::ChangingColumnType,
        "add a column of the new type, write both, backfill, switch reads, drop the old one in a later release",
    ),
    (
        Rule::BanDropColumn,
        "stop reading and writing the column in one release, drop it in a later one (expand, then contract)",
    ),
    (
        Rule::BanDropTable,
        "stop using the table in one release, drop it in a later one (expand, then contract)",
    ),
    (
        Rule::RenamingColumn,
        "add the new column, write both, backfill, switch reads, drop the old one in a later release",
    ),
    (
        Rule::RenamingTable,
        "create the new table (or a view under the new name), switch the code, drop the old one in a later release",
    ),
    (
        Rule::ConstraintMissingNotValid,
        "add the constraint NOT VALID, then VALIDATE CONSTRAINT in a later migration",
    ),
    (
        Rule::AddingFieldWithDefault,
        "add the column without the volatile default, then backfill it in batches",
    ),
    (
        Rule::DisallowedUniqueConstraint,
        "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... UNIQUE USING INDEX",
    ),
    (
        Rule::AddingForeignKeyConstraint,
        "add the foreign key NOT VALID, then VALIDATE CONSTRAINT in a later migration",
    ),
    (
        Rule::TransactionNesting,
        "remove BEGIN/COMMIT: each migration already runs in a transaction of its own",
    ),
];

/// Released migrations that break a rule, accepted as history: (file, rule, why). They are
/// already applied everywhere, and an applied migration cannot be edited.
const ACCEPTED: &[(&str, &str, &str)] = &[];

/// One problem in one migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file, relative to the repository root.
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// squawk's rule name (`ban-drop-column`), or `syntax-error` / `hitsave-allow`.
    pub rule: String,
    pub message: String,
    /// The safe way, or how to fix the comment.
    pub hint: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {} Safe way: {}.",
            self.file, self.line, self.rule, self.message, self.hint
        )
    }
}

/// Lints every `*.sql` file in `<root>/migrations`; an error lists every finding.
pub fn check(root: &Utf8Path) -> anyhow::Result<usize> {
    let dir = root.join("migrations");
    let mut files: Vec<_> = dir
        .read_dir_utf8()
        .with_context(|| format!("cannot read {dir}"))?
        .filter_map(Result::ok)
        .map(|e| e.path().to_owned())
        .filter(|p| p.extension() == Some("sql"))
        .collect();
    files.sort();
    let mut findings = Vec::new();
    for path in &files {
        let sql = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
        let name = format!("migrations/{}", path.file_name().unwrap_or_default());
        findings.extend(lint(&name, &sql));
    }
    if !findings.is_empty() {
        let list: Vec<String> = findings.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "{}\n{} migration problem(s): these statements would lock or break the database the running release serves from. Use the safe way, or, when the statement is safe here, put `-- hitsave: allow <rule>: <why>` above it",
            list.join("\n"),
            findings.len()
        );
    }
    Ok(files.len())
}

/// The findings of one migration, `file` naming it.
pub fn lint(file: &str, sql: &str) -> Vec<Finding> {
    let finding = |offset: usize, rule: &str, message: String, hint: &str| Finding {
        file: file.to_owned(),
        line: line_of(sql, offset),
        rule: rule.to_owned(),
        message,
        hint: hint.to_owned(),
    };
    let parse = SourceFile::parse(sql);
    let errors = parse.errors();
    if !errors.is_empty() {
        return errors
            .iter()
            .map(|e| {
                finding(
                    usize::from(e.range().start()),
                    "syntax-error",
                    format!("{}.", e.message()),
                    "fix the SQL (squawk parses PostgreSQL 15)",
                )
            })
            .collect();
    }
    let (allows, mut findings) = allow_comments(file, sql);
    for marker in ["squawk-ignore", "squawk-disable-assume-in-transaction"] {
        if let Some(offset) = sql.find(marker) {
            findings.push(finding(
                offset,
                "hitsave-allow",
                format!("`{marker}` is not how a migration opts out here."),
                "`-- hitsave: allow <rule>: <why>` above the statement",
            ));
        }
    }
    // sqlx runs a migration in a transaction unless its first line says otherwise.
    let in_transaction = !sql.starts_with("-- no-transaction");
    if in_transaction && let Some(offset) = find_word(sql, "concurrently") {
        findings.push(finding(
            offset,
            "ban-concurrent-index-creation-in-transaction",
            "CONCURRENTLY cannot run inside the transaction sqlx wraps a migration in.".into(),
            "start the migration with `-- no-transaction` and keep the statement alone in it",
        ));
    }
    let mut linter = Linter::from(RULES.iter().map(|(rule, _)| *rule));
    linter.settings.assume_in_transaction = in_transaction;
    let statements: Vec<(usize, usize)> = parse
        .tree()
        .stmts()
        .map(|s| {
            let r = s.syntax().text_range();
            (usize::from(r.start()), usize::from(r.end()))
        })
        .collect();
    let mut used = vec![false; allows.len()];
    for v in linter.lint(&parse, sql) {
        let rule = v.code.to_string();
        let offset = usize::from(v.text_range.start());
        if ACCEPTED.iter().any(|(f, r, _)| *f == file && *r == rule) {
            continue;
        }
        // The statement it is in, from the end of the one before: where its allow may sit.
        let span = statements
            .iter()
            .position(|(start, end)| *start <= offset && offset < *end)
            .map(|i| {
                (
                    if i == 0 { 0 } else { statements[i - 1].1 },
                    statements[i].1,
                )
            });
        let allowed = allows.iter().position(|a| {
            a.rule == rule && span.is_some_and(|(from, to)| from <= a.offset && a.offset < to)
        });
        if let Some(i) = allowed {
            used[i] = true;
            continue;
        }
        let hint = RULES
            .iter()
            .find(|(r, _)| *r == v.code)
            .map_or("see squawk's documentation of the rule", |(_, hint)| hint);
        findings.push(finding(offset, &rule, v.message, hint));
    }
    for (allow, used) in allows.iter().zip(used) {
        if !used {
            findings.push(finding(
                allow.offset,
                "hitsave-allow",
                format!("this allows {} where no statement breaks it.", allow.rule),
                "remove the comment",
            ));
        }
    }
    findings.sort_by_key(|f| f.line);
    findings
}

/// `-- hitsave: allow <rule>: <why>`.
struct Allow {
    offset: usize,
    rule: String,
}

/// The allow comments of a migration, and the findings for malformed ones.
fn allow_comments(file: &str, sql: &str) -> (Vec<Allow>, Vec<Finding>) {
    const MARK: &str = "-- hitsave: allow ";
    let (mut allows, mut findings) = (Vec::new(), Vec::new());
    for (offset, _) in sql.match_indices(MARK) {
        let rest = sql[offset + MARK.len()..]
            .lines()
            .next()
            .unwrap_or_default();
        let (rule, why) = rest.split_once(':').unwrap_or((rest, ""));
        let rule = rule.trim();
        let problem = if Rule::try_from(rule).is_err() {
            Some(format!("{rule:?} is not a squawk rule."))
        } else if why.trim().is_empty() {
            Some(format!("the allow of {rule} does not say why."))
        } else {
            None
        };
        match problem {
            Some(message) => findings.push(Finding {
                file: file.to_owned(),
                line: line_of(sql, offset),
                rule: "hitsave-allow".into(),
                message,
                hint: "`-- hitsave: allow <rule>: <why>`, with a rule from the error above".into(),
            }),
            None => allows.push(Allow {
                offset,
                rule: rule.to_owned(),
            }),
        }
    }
    (allows, findings)
}

fn line_of(sql: &str, offset: usize) -> usize {
    sql[..offset.min(sql.len())].matches('\n').count() + 1
}

/// The offset of `word` (any case) outside `--` comments.
fn find_word(sql: &str, word: &str) -> Option<usize> {
    let mut offset = 0;
    for line in sql.split_inclusive('\n') {
        let code = line.split("--").next().unwrap_or_default();
        if let Some(i) = code.to_ascii_lowercase().find(word) {
            return Some(offset + i);
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sql: &str) -> Vec<String> {
        lint("migrations/x.sql", sql)
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    #[test]
    fn the_projects_migrations_pass() {
        let root = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert!(check(&root).unwrap() >= 4);
    }

    #[test]
    fn refuses_what_locks_or_breaks_a_serving_database() {
        for (sql, rule) in [
            (
                "CREATE INDEX users_login ON users (github_login);",
                "require-concurrent-index-creation",
            ),
            (
                "ALTER TABLE users ADD COLUMN plan TEXT NOT NULL;",
                "adding-required-field",
            ),
            (
                "ALTER TABLE users ALTER COLUMN github_login TYPE VARCHAR(64);",
                "changing-column-type",
            ),
            (
                "ALTER TABLE users DROP COLUMN github_login;",
                "ban-drop-column",
            ),
            ("DROP TABLE waitlist;", "ban-drop-table"),
            (
                "ALTER TABLE users RENAME COLUMN github_login TO login;",
                "renaming-column",
            ),
            ("ALTER TABLE users RENAME TO people;", "renaming-table"),
            (
                "ALTER TABLE users ALTER COLUMN created_at SET NOT NULL;",
                "adding-not-nullable-field",
            ),
        ] {
            assert_eq!(rules(sql), [rule], "{sql}");
        }
        let f = &lint(
            "migrations/5.sql",
            "-- the users\n\nALTER TABLE users DROP COLUMN x;\n",
        )[0];
        assert_eq!((f.line, f.rule.as_str()), (3, "ban-drop-column"));
        let text = f.to_string();
        assert!(
            text.starts_with("migrations/5.sql:3: ban-drop-column: "),
            "{text}"
        );
        assert!(text.contains("expand, then contract"), "{text}");
    }

    #[test]
    fn a_table_made_in_the_same_migration_is_not_live() {
        assert!(rules("CREATE TABLE t (id BIGINT);\nCREATE INDEX t_id ON t (id);").is_empty());
    }

    #[test]
    fn an_allow_needs_a_known_rule_a_reason_and_a_statement_that_needs_it() {
        let allowed = "-- hitsave: allow ban-drop-column: unused since 20261101120000-0123456789ab\nALTER TABLE users\n    DROP COLUMN x;\n";
        assert!(rules(allowed).is_empty(), "{:?}", lint("x", allowed));
        // It covers its own statement only.
        assert_eq!(
            rules(&format!("{allowed}ALTER TABLE users DROP COLUMN y;\n")),
            ["ban-drop-column"]
        );
        assert_eq!(
            rules("-- hitsave: allow ban-drop-column:\nALTER TABLE users DROP COLUMN x;"),
            ["hitsave-allow", "ban-drop-column"]
        );
        assert_eq!(
            rules("-- hitsave: allow no-such-rule: why\nSELECT 1;"),
            ["hitsave-allow"]
        );
        assert_eq!(
            rules("-- hitsave: allow ban-drop-table: why\nSELECT 1;"),
            ["hitsave-allow"]
        );
        assert_eq!(
            rules("-- squawk-ignore ban-drop-column\nALTER TABLE users DROP COLUMN x;"),
            ["hitsave-allow"]
        );
    }

    #[test]
    fn concurrently_needs_no_transaction() {
        let sql = "CREATE INDEX CONCURRENTLY users_login ON users (github_login);";
        assert_eq!(rules(sql), ["ban-concurrent-index-creation-in-transaction"]);
        assert!(rules(&format!("-- no-transaction\n{sql}")).is_empty());
        assert_eq!(rules("SELECT 1;;SELECT ("), ["syntax-error"]);
    }
}
