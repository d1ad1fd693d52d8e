//! Small value types of the purse: card id, BCD dates and times, terminal id.
//!
//! Each validates on construction, so a value of the type is always well formed.

use crate::prelude::*;
use core::fmt;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TypeError {
    #[error("card id must be 16 decimal digits")]
    CardId,
    #[error("invalid BCD date (want YYYYMMDD)")]
    Date,
    #[error("invalid BCD time (want HHMMSS)")]
    Time,
    #[error("invalid expiry (want YYMMDD)")]
    Expiry,
    #[error("terminal id must be 6 bytes (12 hex digits)")]
    Terminal,
    #[error("purse must be 0 (money) or 1 (points)")]
    Purse,
}

/// Which purse of the card: P2 of the purse commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PurseId {
    /// Money, in the currency set at personalisation.
    Money = 0,
    /// Loyalty points (currency 999, exponent 0).
    Points = 1,
}

crate::json::wire_strings!(PurseId {
    Money => "money",
    Points => "points",
});

impl PurseId {
    pub fn from_p2(p2: u8) -> Result<Self, TypeError> {
        match p2 {
            0 => Ok(Self::Money),
            1 => Ok(Self::Points),
            _ => Err(TypeError::Purse),
        }
    }
    pub fn p2(self) -> u8 {
        self as u8
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

fn is_bcd(b: u8) -> bool {
    b >> 4 <= 9 && b & 0x0F <= 9
}

fn bcd_value(b: u8) -> u32 {
    ((b >> 4) * 10 + (b & 0x0F)) as u32
}

fn to_bcd(v: u32) -> u8 {
    (((v / 10) % 10) << 4 | (v % 10)) as u8
}

fn digits_to_bcd<const N: usize>(s: &str) -> Option<[u8; N]> {
    let d = s.as_bytes();
    if d.len() != 2 * N || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (d[2 * i] - b'0') << 4 | (d[2 * i + 1] - b'0');
    }
    Some(out)
}

fn bcd_to_digits(b: &[u8]) -> String {
    let mut out = String::with_capacity(2 * b.len());
    push_bcd(&mut out, b);
    out
}

/// The digits of `b`, with `sep` before the bytes at the indexes `cuts`.
fn bcd_joined(b: &[u8], sep: char, cuts: &[usize]) -> String {
    let mut out = String::with_capacity(2 * b.len() + cuts.len());
    for (i, x) in b.iter().enumerate() {
        if cuts.contains(&i) {
            out.push(sep);
        }
        push_bcd(&mut out, core::slice::from_ref(x));
    }
    out
}

/// Append the digits of `b` to `out` (no `core::fmt`: these run in the wasm).
fn push_bcd(out: &mut String, b: &[u8]) {
    // BCD nibbles are 0..=9 (checked at construction): one ASCII digit each.
    for x in b {
        out.push(char::from(b'0' + (x >> 4)));
        out.push(char::from(b'0' + (x & 0x0F)));
    }
}

/// Card id: 16 decimal digits as 8 BCD bytes. `Display` masks all but the last
/// four digits so a card id can be logged; `full()` gives all digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CardId([u8; 8]);

impl CardId {
    pub fn from_bytes(b: [u8; 8]) -> Result<Self, TypeError> {
        if b.iter().all(|x| is_bcd(*x)) {
            Ok(Self(b))
        } else {
            Err(TypeError::CardId)
        }
    }
    pub fn parse(digits: &str) -> Result<Self, TypeError> {
        digits_to_bcd::<8>(digits)
            .map(Self)
            .ok_or(TypeError::CardId)
    }
    pub fn bytes(&self) -> [u8; 8] {
        self.0
    }
    /// All 16 digits: for storage and the issuer, never for logs.
    pub fn full(&self) -> String {
        bcd_to_digits(&self.0)
    }
    /// `…` plus the last four digits.
    pub fn masked(&self) -> String {
        let mut out = String::from("…");
        push_bcd(&mut out, &self.0[6..]);
        out
    }
}

impl fmt::Display for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardId({})", self.masked())
    }
}

impl Serialize for CardId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full())
    }
}

impl<'de> Deserialize<'de> for CardId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// A calendar date as BCD `YYYYMMDD` (4 bytes), as sent in DEBIT and CREDIT.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BcdDate([u8; 4]);

impl BcdDate {
    pub fn from_bytes(b: [u8; 4]) -> Result<Self, TypeError> {
        if !b.iter().all(|x| is_bcd(*x)) {
            return Err(TypeError::Date);
        }
        let year = bcd_value(b[0]) * 100 + bcd_value(b[1]);
        Self::from_ymd(year, bcd_value(b[2]), bcd_value(b[3]))
    }
    pub fn from_ymd(year: u32, month: u32, day: u32) -> Result<Self, TypeError> {
        if year > 9999 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month)
        {
            return Err(TypeError::Date);
        }
        Ok(Self([
            to_bcd(year / 100),
            to_bcd(year % 100),
            to_bcd(month),
            to_bcd(day),
        ]))
    }
    pub fn parse(s: &str) -> Result<Self, TypeError> {
        Self::from_bytes(digits_to_bcd::<4>(s).ok_or(TypeError::Date)?)
    }
    /// The civil date of a Unix timestamp (UTC).
    pub fn from_unix(secs: u64) -> Self {
        // Howard Hinnant's days-from-civil inverse.
        let z = (secs / 86_400) as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let y = (yoe + era * 400 + i64::from(m <= 2)) as u32;
        Self::from_ymd(y, m, d).unwrap_or_else(|_| panic!("civil date from timestamp is valid"))
    }
    pub fn bytes(&self) -> [u8; 4] {
        self.0
    }
    pub fn ymd(&self) -> (u32, u32, u32) {
        (
            bcd_value(self.0[0]) * 100 + bcd_value(self.0[1]),
            bcd_value(self.0[2]),
            bcd_value(self.0[3]),
        )
    }
}

impl BcdDate {
    /// `YYYY-MM-DD`, as `Display` writes it.
    pub fn text(&self) -> String {
        bcd_joined(&self.0, '-', &[2, 3])
    }
}

impl fmt::Display for BcdDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}
impl fmt::Debug for BcdDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BcdDate({self})")
    }
}
impl TryFrom<String> for BcdDate {
    type Error = TypeError;
    fn try_from(s: String) -> Result<Self, TypeError> {
        Self::parse(&s)
    }
}
impl From<BcdDate> for String {
    fn from(d: BcdDate) -> String {
        bcd_to_digits(&d.0)
    }
}

/// A time of day as BCD `HHMMSS` (3 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BcdTime([u8; 3]);

impl BcdTime {
    pub fn from_bytes(b: [u8; 3]) -> Result<Self, TypeError> {
        if !b.iter().all(|x| is_bcd(*x)) {
            return Err(TypeError::Time);
        }
        Self::from_hms(bcd_value(b[0]), bcd_value(b[1]), bcd_value(b[2]))
    }
    pub fn from_hms(h: u32, m: u32, s: u32) -> Result<Self, TypeError> {
        if h > 23 || m > 59 || s > 59 {
            return Err(TypeError::Time);
        }
        Ok(Self([to_bcd(h), to_bcd(m), to_bcd(s)]))
    }
    pub fn parse(s: &str) -> Result<Self, TypeError> {
        Self::from_bytes(digits_to_bcd::<3>(s).ok_or(TypeError::Time)?)
    }
    pub fn from_unix(secs: u64) -> Self {
        let s = (secs % 86_400) as u32;
        Self::from_hms(s / 3600, s / 60 % 60, s % 60)
            .unwrap_or_else(|_| panic!("time of day is valid"))
    }
    pub fn bytes(&self) -> [u8; 3] {
        self.0
    }
}

impl BcdTime {
    /// `HH:MM:SS`, as `Display` writes it.
    pub fn text(&self) -> String {
        bcd_joined(&self.0, ':', &[1, 2])
    }
}

impl fmt::Display for BcdTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}
impl fmt::Debug for BcdTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BcdTime({self})")
    }
}
impl TryFrom<String> for BcdTime {
    type Error = TypeError;
    fn try_from(s: String) -> Result<Self, TypeError> {
        Self::parse(&s)
    }
}
impl From<BcdTime> for String {
    fn from(t: BcdTime) -> String {
        bcd_to_digits(&t.0)
    }
}

/// Card expiry as BCD `YYMMDD` (3 bytes); the card is valid through that day (years 20YY).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Expiry([u8; 3]);

impl Expiry {
    pub fn from_bytes(b: [u8; 3]) -> Result<Self, TypeError> {
        let date = [0x20, b[0], b[1], b[2]];
        BcdDate::from_bytes(date).map_err(|_| TypeError::Expiry)?;
        Ok(Self(b))
    }
    pub fn parse(s: &str) -> Result<Self, TypeError> {
        Self::from_bytes(digits_to_bcd::<3>(s).ok_or(TypeError::Expiry)?)
    }
    pub fn bytes(&self) -> [u8; 3] {
        self.0
    }
    /// The last valid day as a full date.
    pub fn last_day(&self) -> BcdDate {
        BcdDate::from_bytes([0x20, self.0[0], self.0[1], self.0[2]])
            .unwrap_or_else(|_| panic!("checked at construction"))
    }
    /// True if `date` is after the last valid day.
    pub fn is_expired_on(&self, date: &BcdDate) -> bool {
        *date > self.last_day()
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.last_day().fmt(f)
    }
}
impl fmt::Debug for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expiry({self})")
    }
}
impl TryFrom<String> for Expiry {
    type Error = TypeError;
    fn try_from(s: String) -> Result<Self, TypeError> {
        Self::parse(&s)
    }
}
impl From<Expiry> for String {
    fn from(e: Expiry) -> String {
        bcd_to_digits(&e.0)
    }
}

/// Terminal id (6 bytes): the security module's id in INITIALIZE and the MACs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Terminal(pub [u8; 6]);

impl Terminal {
    pub fn parse_hex(s: &str) -> Result<Self, TypeError> {
        let v = crate::wire::hex_bytes(s.as_bytes()).ok_or(TypeError::Terminal)?;
        Ok(Self(v.try_into().map_err(|_| TypeError::Terminal)?))
    }
    pub fn bytes(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for Terminal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}
impl fmt::Debug for Terminal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Terminal({self})")
    }
}
impl TryFrom<String> for Terminal {
    type Error = TypeError;
    fn try_from(s: String) -> Result<Self, TypeError> {
        Self::parse_hex(&s)
    }
}
impl crate::json::lite::Encode for Terminal {
    fn encode(&self, w: &mut crate::json::lite::Writer) {
        w.hex(&self.0, true);
    }
}
impl crate::json::lite::Decode for Terminal {
    fn decode(r: &mut crate::json::lite::Reader<'_>) -> Result<Self, crate::json::Error> {
        Self::parse_hex(&r.text()?).map_err(|_| crate::json::Error(None))
    }
}
impl From<Terminal> for String {
    fn from(t: Terminal) -> String {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A terminal id is read by the wire's hex reader (not the hex crate's, which
        /// is not in the wasm): the same 6 bytes, or a refusal, for the same text as
        /// the hex crate gives (either case; odd, short, long, non-hex, non-ASCII).
        #[test]
        fn terminal_hex_reads_as_the_hex_crate_does(
            s in "[0-9a-fA-F]{12}|[ \t]?[0-9a-fA-F]{12}[ \t]?|[0-9a-fA-F]{10,14}|[0-9a-fA-Fg é]{0,14}"
        ) {
            let theirs = hex::decode(&s).ok().and_then(|v| <[u8; 6]>::try_from(v).ok());
            prop_assert_eq!(Terminal::parse_hex(&s).ok().map(|t| t.bytes()), theirs);
        }

        /// The texts built without core::fmt are what the formatting wrote before.
        #[test]
        fn dates_times_and_masks_read_as_formatted(y in 2000u32..=2099, m in 1u32..=12, d in 1u32..=28,
                                                   h in 0u32..24, mi in 0u32..60, s in 0u32..60,
                                                   id in 0u64..10_000_000_000_000_000) {
            let date = BcdDate::from_ymd(y, m, d).unwrap();
            prop_assert_eq!(date.text(), format!("{y:04}-{m:02}-{d:02}"));
            prop_assert_eq!(date.to_string(), date.text());
            let time = BcdTime::from_hms(h, mi, s).unwrap();
            prop_assert_eq!(time.text(), format!("{h:02}:{mi:02}:{s:02}"));
            let digits = format!("{id:016}");
            let card = CardId::parse(&digits).unwrap();
            prop_assert_eq!(card.masked(), format!("…{}", &digits[12..]));
        }
    }

    #[test]
    fn card_id_masks_in_display() {
        let id = CardId::parse("6280000000000001").unwrap();
        assert_eq!(id.to_string(), "…0001");
        assert_eq!(format!("{id:?}"), "CardId(…0001)");
        assert_eq!(id.full(), "6280000000000001");
        assert_eq!(id.bytes(), [0x62, 0x80, 0, 0, 0, 0, 0, 0x01]);
        assert!(CardId::parse("628000000000000").is_err());
        assert!(CardId::parse("62800000000000a1").is_err());
        assert!(CardId::from_bytes([0xAA; 8]).is_err());
    }

    #[test]
    fn dates_validate() {
        assert!(BcdDate::parse("20240229").is_ok());
        assert!(BcdDate::parse("20230229").is_err());
        assert!(BcdDate::parse("20231301").is_err());
        assert!(BcdDate::from_bytes([0x20, 0x2A, 0x01, 0x01]).is_err());
        assert!(BcdTime::parse("235959").is_ok());
        assert!(BcdTime::parse("240000").is_err());
        assert_eq!(BcdDate::from_unix(0).to_string(), "1970-01-01");
        assert_eq!(BcdDate::from_unix(1_795_392_000).to_string(), "2026-11-23");
        assert_eq!(BcdTime::from_unix(3600 * 13 + 61).to_string(), "13:01:01");
    }

    #[test]
    fn expiry_is_inclusive() {
        let e = Expiry::parse("301231").unwrap();
        assert!(!e.is_expired_on(&BcdDate::parse("20301231").unwrap()));
        assert!(e.is_expired_on(&BcdDate::parse("20310101").unwrap()));
        assert!(Expiry::parse("301232").is_err());
    }

    proptest! {
        #[test]
        fn date_from_unix_roundtrips_through_bytes(secs in 0u64..4_000_000_000) {
            let d = BcdDate::from_unix(secs);
            prop_assert_eq!(BcdDate::from_bytes(d.bytes()).unwrap(), d);
            let t = BcdTime::from_unix(secs);
            prop_assert_eq!(BcdTime::from_bytes(t.bytes()).unwrap(), t);
        }
    }
}
