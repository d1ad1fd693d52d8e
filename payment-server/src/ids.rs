//! The one rule for every id the APIs, sessions, batches and config carry
//! (txn, merchant and bank ids, order and account references, batch and key
//! ids): 1 to 128 of `[A-Za-z0-9-_.:]` (docs/protocol.md, "Sessions").

/// The rule, as refusals say it.
pub const RULE: &str = "1..128 of [A-Za-z0-9-_.:]";

/// `v` is an id.
pub fn ok(v: &str) -> bool {
    !v.is_empty() && ok_or_empty(v)
}

/// `v` is an id or empty (the optional references: order, account).
pub fn ok_or_empty(v: &str) -> bool {
    v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_plain() {
        for v in ["T-1", "shop_a", "a.b:c", &"x".repeat(128)] {
            assert!(ok(v) && ok_or_empty(v), "{v}");
        }
        assert!(!ok("") && ok_or_empty(""));
        for v in [
            &"x".repeat(129),
            "a b",
            "a/b",
            "ä",
            "a\n",
            "<script>",
            "a%20",
        ] {
            assert!(!ok(v) && !ok_or_empty(v), "{v:?}");
        }
    }
}
