//! Money formatting that respects zero- and three-decimal currencies.
//!
//! Stripe gives every amount as an integer in the currency's minor unit, so an email must know
//! how many of those digits are decimals: 2000 is $20.00 but ¥2,000. The currency lists are
//! Stripe's own (docs.stripe.com/currencies); a currency missing from both lists has two decimals,
//! which is what Stripe assumes too.

/// Currencies whose amounts Stripe gives in whole units.
const ZERO_DECIMAL: [&str; 16] = [
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];

/// Currencies whose amounts Stripe gives in thousandths.
const THREE_DECIMAL: [&str; 5] = ["BHD", "JOD", "KWD", "OMR", "TND"];

/// How many decimal digits `currency`'s minor unit has (0, 2 or 3), case-insensitively.
pub fn minor_unit_exponent(currency: &str) -> u32 {
    let code = currency.trim().to_ascii_uppercase();
    if ZERO_DECIMAL.contains(&code.as_str()) {
        0
    } else if THREE_DECIMAL.contains(&code.as_str()) {
        3
    } else {
        2
    }
}

/// Formats an amount in minor units for a customer: `$1,234.56`, `¥2,000`, `KWD 1.500`.
///
/// Only currencies whose symbol is unambiguous to an English reader get one; every other currency
/// is written with its upper-cased ISO code, because `$` alone would misstate a CAD or AUD price.
pub fn format_money(amount_minor: i64, currency: &str) -> String {
    let code = currency.trim().to_ascii_uppercase();
    let exponent = minor_unit_exponent(&code);
    let number = format_number(amount_minor.unsigned_abs(), exponent);
    let sign = if amount_minor < 0 { "-" } else { "" };
    match symbol(&code) {
        Some(symbol) => format!("{sign}{symbol}{number}"),
        None if code.is_empty() => format!("{sign}{number}"),
        None => format!("{sign}{code} {number}"),
    }
}

fn symbol(code: &str) -> Option<&'static str> {
    match code {
        "USD" => Some("$"),
        "EUR" => Some("€"),
        "GBP" => Some("£"),
        "JPY" => Some("¥"),
        _ => None,
    }
}

/// Writes `minor` with `exponent` decimals and a comma between groups of three whole digits.
fn format_number(minor: u64, exponent: u32) -> String {
    let divisor = 10u64.pow(exponent);
    let whole = (minor / divisor).to_string();
    let mut out = String::with_capacity(whole.len() + whole.len() / 3 + 4);
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if exponent > 0 {
        let width = exponent as usize;
        out.push_str(&format!(".{:0width$}", minor % divisor));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_decimal_currencies_with_symbols() {
        assert_eq!(format_money(2000, "usd"), "$20.00");
        assert_eq!(format_money(2000, "eur"), "€20.00");
        assert_eq!(format_money(2000, "gbp"), "£20.00");
        assert_eq!(format_money(5, "usd"), "$0.05");
        assert_eq!(format_money(0, "usd"), "$0.00");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(format_money(123_456, "usd"), "$1,234.56");
        assert_eq!(format_money(100_000, "usd"), "$1,000.00");
        assert_eq!(format_money(99_999, "usd"), "$999.99");
        assert_eq!(format_money(123_456_789_012, "eur"), "€1,234,567,890.12");
    }

    #[test]
    fn zero_decimal_currencies() {
        assert_eq!(format_money(2000, "jpy"), "¥2,000");
        assert_eq!(format_money(50_000, "krw"), "KRW 50,000");
        assert_eq!(format_money(999, "vnd"), "VND 999");
        assert_eq!(minor_unit_exponent("xpf"), 0);
    }

    #[test]
    fn three_decimal_currencies() {
        assert_eq!(format_money(1500, "kwd"), "KWD 1.500");
        assert_eq!(format_money(1_234_560, "bhd"), "BHD 1,234.560");
        assert_eq!(format_money(5, "tnd"), "TND 0.005");
        assert_eq!(minor_unit_exponent("omr"), 3);
    }

    #[test]
    fn negative_amounts_put_the_sign_first() {
        assert_eq!(format_money(-123_456, "usd"), "-$1,234.56");
        assert_eq!(format_money(-1500, "kwd"), "-KWD 1.500");
        assert_eq!(format_money(-2000, "jpy"), "-¥2,000");
    }

    #[test]
    fn extreme_amounts_do_not_overflow() {
        assert_eq!(format_money(i64::MAX, "usd"), "$92,233,720,368,547,758.07");
        assert_eq!(format_money(i64::MIN, "usd"), "-$92,233,720,368,547,758.08");
    }

    #[test]
    fn unknown_codes_are_upper_cased_with_two_decimals() {
        assert_eq!(format_money(1234, "abc"), "ABC 12.34");
        assert_eq!(format_money(1234, "cad"), "CAD 12.34");
        assert_eq!(minor_unit_exponent("abc"), 2);
        assert_eq!(format_money(1234, ""), "12.34");
    }

    #[test]
    fn codes_are_case_insensitive() {
        assert_eq!(format_money(2000, "USD"), format_money(2000, "usd"));
        assert_eq!(format_money(2000, "Jpy"), "¥2,000");
        assert_eq!(minor_unit_exponent("KwD"), 3);
        assert_eq!(minor_unit_exponent(" jpy "), 0);
    }
}
