//! `KEY=VALUE` files: release.env (written by the install, read by compose and by later
//! installs) and host.env (the operator's settings, read by the hooks). One syntax for both:
//! blank lines and `#` comments are skipped, whitespace around keys and values is trimmed,
//! and one pair of double quotes around a value is removed, as compose's `--env-file` does.

use anyhow::bail;
use camino::Utf8Path;

/// One setting and the line it was on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub number: usize,
    pub key: String,
    pub value: String,
}

/// The settings of `text`, in order; `path` names the file in errors. A line that is not
/// `KEY=VALUE` is an error naming its number.
pub fn parse(path: &Utf8Path, text: &str) -> anyhow::Result<Vec<Line>> {
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!("{path}:{}: expected KEY=VALUE, found {line:?}", n + 1);
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            bail!("{path}:{}: {key:?} is not a setting name", n + 1);
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        lines.push(Line {
            number: n + 1,
            key: key.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_syntax() {
        let text = "# comment\n\nA=1\n  B = two words  \nC=\"quoted\"\nD=x=y\nE=\n";
        let got: Vec<(String, String)> = parse(Utf8Path::new("f"), text)
            .unwrap()
            .into_iter()
            .map(|l| (l.key, l.value))
            .collect();
        let want = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "quoted"),
            ("D", "x=y"),
            ("E", ""),
        ];
        assert_eq!(
            got,
            want.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec()
        );
        let err = parse(Utf8Path::new("host.env"), "A=1\nnot a setting\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("host.env:2: expected KEY=VALUE"),
            "{err}"
        );
        assert!(parse(Utf8Path::new("f"), "=1\n").is_err());
    }
}
