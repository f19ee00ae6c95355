//! Aliases `prefix.{GUID}.region.azure.privatelinkservice` and the GUIDs in them.

use rand::RngCore;

/// The fixed end of every alias.
pub(crate) const ALIAS_SUFFIX: &str = "azure.privatelinkservice";

/// A random (version 4, RFC 9562 variant) GUID in its 8-4-4-4-12 lowercase hex form, drawn from
/// `rng` (the control plane's ChaCha stream, seeded by the scenario, so runs are reproducible).
pub(crate) fn guid(rng: &mut impl RngCore) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // variant 10xx
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        h(0..4),
        h(4..6),
        h(6..8),
        h(8..10),
        h(10..16)
    )
}

/// The alias of a service: `prefix.{guid}.region.azure.privatelinkservice`.
pub(crate) fn alias(prefix: &str, guid: &str, region: &str) -> String {
    format!("{prefix}.{guid}.{region}.{ALIAS_SUFFIX}")
}

/// Why a name is not a valid Azure resource name (1 to 80 characters of letters, digits, `_`,
/// `.` and `-`, starting with a letter or digit, ending with a letter, digit or `_`), or, with
/// `dots = false`, a valid alias prefix (the same without `.`, which separates the alias parts).
pub(crate) fn name_problem(name: &str, dots: bool) -> Option<String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dots && c == '.');
    if name.is_empty() || name.len() > 80 {
        return Some(format!("`{name}` must have 1 to 80 characters"));
    }
    if let Some(c) = name.chars().find(|&c| !ok_char(c)) {
        return Some(format!(
            "`{name}` contains `{c}`: allowed are letters, digits, `_`, `-`{}",
            if dots { ", `.`" } else { "" }
        ));
    }
    let first = name.chars().next().unwrap_or('a');
    let last = name.chars().last().unwrap_or('a');
    if !first.is_ascii_alphanumeric() {
        return Some(format!("`{name}` must start with a letter or a digit"));
    }
    if !(last.is_ascii_alphanumeric() || last == '_') {
        return Some(format!("`{name}` must end with a letter, a digit or `_`"));
    }
    None
}

/// Why a region name is not one (lowercase letters and digits, like `westeurope`).
pub(crate) fn region_problem(region: &str) -> Option<String> {
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Some(format!(
            "`{region}` is not a region name: lowercase letters and digits, like `westeurope`"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn guid_format_and_version_bits() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100 {
            let g = guid(&mut rng);
            let parts: Vec<&str> = g.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                vec![8, 4, 4, 4, 12]
            );
            assert!(
                g.chars()
                    .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
            );
            assert_eq!(&parts[2][..1], "4");
            assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
        }
        let a = guid(&mut ChaCha8Rng::seed_from_u64(7));
        let b = guid(&mut ChaCha8Rng::seed_from_u64(7));
        assert_eq!(a, b);
    }

    #[test]
    fn names() {
        assert_eq!(name_problem("app-1", false), None);
        assert_eq!(name_problem("a.b", true), None);
        assert!(name_problem("a.b", false).unwrap().contains("contains `.`"));
        assert!(name_problem("", true).is_some());
        assert!(name_problem("-a", true).unwrap().contains("start"));
        assert!(name_problem("a-", true).unwrap().contains("end"));
        assert_eq!(name_problem(&"x".repeat(80), true), None);
        assert!(name_problem(&"x".repeat(81), true).is_some());
        assert_eq!(region_problem("westeurope"), None);
        assert!(region_problem("West Europe").is_some());
    }
}
