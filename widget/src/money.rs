//! Formatting amounts for people: minor units + exponent + currency → "€12.50" / "12,50 €".

use crate::i18n::Lang;

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

/// Digits of `minor` with `exponent` decimals, using `sep` as decimal separator.
fn digits(minor: u64, exponent: u8, sep: char) -> String {
    if exponent == 0 {
        return minor.to_string();
    }
    let scale = 10u64.pow(exponent as u32);
    let whole = minor / scale;
    let frac = minor % scale;
    format!("{whole}{sep}{frac:0width$}", width = exponent as usize)
}

/// A human-readable amount in the shopper's language.
pub fn format_amount(minor: u64, currency: u16, exponent: u8, lang: Lang) -> String {
    if currency == 999 {
        let n = digits(minor, exponent, lang.decimal_sep());
        return match lang {
            Lang::En => format!("{n} points"),
            Lang::De => format!("{n} Punkte"),
        };
    }
    let n = digits(minor, exponent, lang.decimal_sep());
    match (symbol(currency), lang) {
        (Some(s), Lang::En) if s.chars().count() == 1 => format!("{s}{n}"),
        (Some(s), _) => format!("{n} {s}"),
        (None, _) => format!("{n} ({currency:03})"),
    }
}

#[cfg(test)]
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
    }
}
