//! Formatting amounts for people: minor units + exponent + currency → "€12.50" / "12,50 €".

use crate::i18n::Lang;
use crate::prelude::*;

/// ISO 4217 alphabetic code or symbol for the numeric currencies the purse uses.
fn symbol(currency: u16) -> Option<&'static str> {
    match currency {
        978 => Some("€"),
        840 => Some("$"),
        826 => Some("£"),
        756 => Some("CHF"),
        _ => None,
    }
}

/// `n` in decimal digits (no `core::fmt`: see [`crate::view`]).
pub fn decimal(n: u64) -> String {
    padded(n, 1)
}

/// `n` in decimal, with leading zeros to at least `width` digits.
fn padded(n: u64, width: usize) -> String {
    let mut s = String::new();
    purse::json::push_decimal(&mut s, n, width);
    s
}

/// Digits of `minor` with `exponent` decimals, using `sep` as decimal separator.
fn digits(minor: u64, exponent: u8, sep: char) -> String {
    if exponent == 0 {
        return decimal(minor);
    }
    let scale = 10u64.pow(exponent as u32);
    let mut s = decimal(minor / scale);
    s.push(sep);
    s.push_str(&padded(minor % scale, exponent as usize));
    s
}

/// A human-readable amount in the shopper's language.
pub fn format_amount(minor: u64, currency: u16, exponent: u8, lang: Lang) -> String {
    let n = digits(minor, exponent, lang.decimal_sep());
    if currency == 999 {
        let points = match lang {
            #[cfg(feature = "en")]
            Lang::En => " points",
            #[cfg(feature = "de")]
            Lang::De => " Punkte",
        };
        return n + points;
    }
    match (symbol(currency), lang) {
        #[cfg(feature = "en")]
        (Some(s), Lang::En) if s.chars().count() == 1 => [s, &n].concat(),
        (Some(s), _) => [&n, " ", s].concat(),
        (None, _) => [&n, " (", &padded(currency.into(), 3), ")"].concat(),
    }
}

#[cfg(all(test, feature = "en", feature = "de"))]
mod tests {
    use super::*;

    #[test]
    fn formats_euro_in_both_languages() {
        assert_eq!(format_amount(1250, 978, 2, Lang::En), "€12.50");
        assert_eq!(format_amount(1250, 978, 2, Lang::De), "12,50 €");
        assert_eq!(format_amount(5, 978, 2, Lang::En), "€0.05");
        assert_eq!(format_amount(0, 978, 2, Lang::En), "€0.00");
    }

    #[test]
    fn formats_points_and_unknown_currencies() {
        assert_eq!(format_amount(120, 999, 0, Lang::En), "120 points");
        assert_eq!(format_amount(120, 999, 0, Lang::De), "120 Punkte");
        assert_eq!(format_amount(1000, 124, 2, Lang::En), "10.00 (124)");
        assert_eq!(format_amount(1000, 36, 2, Lang::En), "10.00 (036)");
        assert_eq!(format_amount(7, 999, 3, Lang::De), "0,007 Punkte");
    }

    #[test]
    fn decimal_is_what_display_writes() {
        for n in [0, 1, 9, 10, 99, 100, 4_294_967_295, u64::MAX] {
            assert_eq!(decimal(n), n.to_string());
        }
        for (n, width) in [(7, 3), (0, 3), (1_234, 2), (u64::MAX, 22)] {
            assert_eq!(padded(n, width), format!("{n:0width$}"));
        }
    }
}
