//! "Did you mean": the closest of some names to one that matched none.

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::osa_distance(word, c), c))
        .filter(|(d, c)| *d > 0 && *d <= (word.len().max(c.len()) / 3).max(1) && *d < word.len())
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::nearest;

    #[test]
    fn a_typo_is_suggested_and_a_stranger_is_not() {
        let names = ["deploy", "build", "migrate"];
        assert_eq!(nearest("deplyo", names.iter().copied()), Some("deploy"));
        assert_eq!(nearest("biuld", names.iter().copied()), Some("build"));
        assert_eq!(nearest("zzz", names.iter().copied()), None);
        // The same name is no suggestion.
        assert_eq!(nearest("build", names.iter().copied()), None);
    }
}
