//! Closed sets of words: an environment, a swap strategy, a hook event. Each value knows its
//! spelling and a line of help, so the command layer can offer them as flag values (and
//! settings files can be parsed) without the features knowing about flags.

/// A value spelled as one of a fixed set of words.
pub trait Choice: Copy + PartialEq + 'static {
    /// Every value, in the order help lists them.
    const ALL: &'static [Self];
    /// What a command line or a settings file calls it.
    fn word(self) -> &'static str;
    /// One line for `--help`.
    fn help(self) -> &'static str;
    /// The value `word` spells, or an error listing the words.
    fn parse(word: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.word() == word)
            .ok_or_else(|| {
                let words: Vec<&str> = Self::ALL.iter().map(|c| c.word()).collect();
                format!("{word:?} is not one of {}", words.join(", "))
            })
    }
}

/// Implements [`Choice`] from `Variant => "word", "help"` lines.
#[macro_export]
macro_rules! choice {
    ($ty:ty { $($variant:ident => $word:literal, $help:literal;)+ }) => {
        impl $crate::kit::choice::Choice for $ty {
            const ALL: &'static [Self] = &[$(<$ty>::$variant),+];
            fn word(self) -> &'static str {
                match self { $(<$ty>::$variant => $word),+ }
            }
            fn help(self) -> &'static str {
                match self { $(<$ty>::$variant => $help),+ }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::Choice;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Color {
        Red,
        Blue,
    }
    crate::choice!(Color {
        Red => "red", "warm";
        Blue => "blue", "cold";
    });

    #[test]
    fn words_parse_back_and_unknown_words_are_listed() {
        assert_eq!(Color::parse("blue"), Ok(Color::Blue));
        assert_eq!(Color::Red.word(), "red");
        assert_eq!(
            Color::parse("green"),
            Err("\"green\" is not one of red, blue".to_owned())
        );
    }
}
