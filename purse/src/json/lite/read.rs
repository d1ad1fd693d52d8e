//! Messages read without serde: one object scanner that hands out fields by
//! name ([`Reader::object`]), typed readers for the values, and a [`Decode`]
//! impl per message (mostly written by [`decode_struct!`]). The clients read
//! every answer through this, natively and in the browser, so a message has
//! one decoder on each side: serde's derived `Deserialize` per message made
//! most of the wasm's JSON code (docs/widget.md, "Figures"). The peers that
//! keep serde (bridge, payment server) are held to the same result by
//! differential tests beside each message (generator: [`testing`]): same
//! accept/reject, same value. One deliberate difference stays: nesting deeper
//! than lite's 64 levels (serde_json: 128) is refused, as lite always did.
//!
//! Strictness is serde's derive: unknown fields skipped (refused with
//! `deny_unknown_fields`), a known field twice refused, `null` only for an
//! `Option`, a missing field refused unless it is an `Option` or
//! `#[serde(default)]` (then `None` / the default).

use super::{fail, De, Error, R};
use crate::prelude::*;
use alloc::borrow::Cow;

/// A message's (or a field value's) decoder.
pub trait Decode: Sized {
    fn decode(r: &mut Reader<'_>) -> R<Self>;
}

/// The text being read, at the next value.
pub struct Reader<'a> {
    de: De<'a>,
}

/// `T` from the whole of `b` (whitespace around it allowed, nothing else).
pub fn decode<T: Decode>(b: &[u8]) -> R<T> {
    let mut r = Reader {
        de: De {
            s: b,
            i: 0,
            depth: 0,
        },
    };
    let v = T::decode(&mut r)?;
    r.de.ws();
    if r.de.i != b.len() {
        return fail();
    }
    Ok(v)
}

impl<'a> Reader<'a> {
    /// A string.
    pub fn str(&mut self) -> R<String> {
        self.de.string().map(|s| s.into_owned())
    }

    /// A string, borrowed from the text where it has no escapes: for a value that is
    /// parsed further (hex) and not kept.
    #[inline(never)]
    pub fn text(&mut self) -> R<Cow<'a, str>> {
        self.de.string()
    }

    /// One of a fixed set of strings: its index in `names`, or `None` for another
    /// string. One function for every enum that travels as a string.
    #[inline(never)]
    pub fn one_of(&mut self, names: &[&str]) -> R<Option<usize>> {
        let s = self.de.string()?;
        Ok(position(names, &s))
    }

    /// A non-negative integer (serde_json reads `-0` as a float: refused too).
    #[inline(never)]
    pub fn u64(&mut self) -> R<u64> {
        if !self.de.peek()?.is_ascii_digit() {
            return fail();
        }
        self.de.number().map(|(_, n)| n)
    }

    pub fn bool(&mut self) -> R<bool> {
        match self.de.peek()? {
            b't' => self.de.word(b"true").map(|_| true),
            b'f' => self.de.word(b"false").map(|_| false),
            _ => fail(),
        }
    }

    /// `null` (eaten: true) or something else (left: false).
    #[inline(never)]
    pub fn null(&mut self) -> R<bool> {
        if self.de.peek()? == b'n' {
            self.de.word(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The whole text being read (what a [`Span`] read from it points into).
    pub fn input(&self) -> &'a [u8] {
        self.de.s
    }

    /// Skip one value, whatever it is.
    pub fn skip(&mut self) -> R<()> {
        self.de.skip()
    }

    /// An object whose members are named in `names` (an entry may list aliases,
    /// `name|ALIAS`): `field(i, reader)` reads the value of the member named by
    /// `names[i]`; a name not there is skipped, or with `deny_unknown` the object
    /// refused. One scanner and one name lookup for every message, so a message's
    /// decoder is only its fields' readers.
    #[inline(never)]
    pub fn object(
        &mut self,
        deny_unknown: bool,
        names: &[&str],
        field: &mut dyn FnMut(usize, &mut Reader<'a>) -> R<()>,
    ) -> R<()> {
        self.list(b'{', &mut |r| {
            let key = r.de.string()?;
            r.de.eat(b':')?;
            match position(names, &key) {
                Some(i) => field(i, r),
                None if deny_unknown => fail(),
                None => r.skip(),
            }
        })
    }

    /// An array: `item(reader)` reads each element.
    pub fn array(&mut self, item: &mut dyn FnMut(&mut Reader<'a>) -> R<()>) -> R<()> {
        self.list(b'[', item)
    }

    /// `[` or `{` (`open`), `each` for every comma-separated member, then the closing
    /// bracket (`open + 2` in ASCII).
    #[inline(never)]
    fn list(&mut self, open: u8, each: &mut dyn FnMut(&mut Reader<'a>) -> R<()>) -> R<()> {
        self.de.eat(open)?;
        self.de.deeper()?;
        let mut first = true;
        while self.de.peek()? != open + 2 {
            if !first {
                self.de.eat(b',')?;
            }
            first = false;
            each(self)?;
        }
        self.de.i += 1;
        self.de.depth -= 1;
        Ok(())
    }
}

/// Where `s` is in `names` (an entry may be `name|ALIAS|…`).
fn position(names: &[&str], s: &str) -> Option<usize> {
    let s = s.as_bytes();
    names
        .iter()
        .position(|n| n.as_bytes().split(|b| *b == b'|').any(|n| n == s))
}

/// A field's value into its slot; a field already seen is refused (serde's
/// "duplicate field").
pub fn set<T: Decode>(slot: &mut Option<T>, r: &mut Reader<'_>) -> R<()> {
    if slot.is_some() {
        return fail();
    }
    *slot = Some(T::decode(r)?);
    Ok(())
}

impl Decode for String {
    fn decode(r: &mut Reader<'_>) -> R<Self> {
        r.str()
    }
}

impl Decode for bool {
    fn decode(r: &mut Reader<'_>) -> R<Self> {
        r.bool()
    }
}

impl Decode for u64 {
    fn decode(r: &mut Reader<'_>) -> R<Self> {
        r.u64()
    }
}

macro_rules! narrow {
    ($($t:ty)*) => {$(
        impl Decode for $t {
            fn decode(r: &mut Reader<'_>) -> R<Self> {
                <$t>::try_from(r.u64()?).map_err(|_| Error(None))
            }
        }
    )*};
}
narrow!(u8 u16 u32);

impl<T: Decode> Decode for Option<T> {
    fn decode(r: &mut Reader<'_>) -> R<Self> {
        if r.null()? {
            return Ok(None);
        }
        T::decode(r).map(Some)
    }
}

impl<T: Decode> Decode for Vec<T> {
    fn decode(r: &mut Reader<'_>) -> R<Self> {
        let mut out = Vec::new();
        r.array(&mut |r| {
            out.push(T::decode(r)?);
            Ok(())
        })?;
        Ok(out)
    }
}

/// A value checked and left as text: where it lies in the input, to be decoded on
/// its own later ([`Span::of`], then [`decode`]) as the type the context says. For a
/// member whose type depends on something outside the message (the bridge's
/// `result`, read as the answer to the request it replies to), so the message
/// around it has one decoder, not one per type. Nesting is checked where the value
/// is (one level deeper than decoding it alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: usize,
    end: usize,
}

impl Span {
    /// The value's text in `input` (the text the span was read from).
    pub fn of(self, input: &[u8]) -> &[u8] {
        input.get(self.start..self.end).unwrap_or_default()
    }
}

impl Decode for Span {
    fn decode(r: &mut Reader<'_>) -> R<Self> {
        r.de.ws();
        let start = r.de.i;
        r.skip()?;
        Ok(Span { start, end: r.de.i })
    }
}

/// Any value, read and dropped.
impl Decode for serde::de::IgnoredAny {
    fn decode(r: &mut Reader<'_>) -> R<Self> {
        r.skip().map(|_| serde::de::IgnoredAny)
    }
}

/// `impl Decode` for a struct with named fields, as serde's derive reads it:
/// `field` required, `field: opt` missing reads as `Default` (an `Option`, or
/// `#[serde(default)]`), `field | "ALIAS"` also under another name;
/// `deny_unknown_fields` first for a struct that has it.
#[macro_export]
#[doc(hidden)]
macro_rules! decode_struct {
    ($ty:ty $(, $deny:ident)? { $($f:ident $(: $opt:ident)? $(| $alias:literal)*),* $(,)? }) => {
        impl $crate::json::lite::Decode for $ty {
            fn decode(r: &mut $crate::json::lite::Reader<'_>) -> Result<Self, $crate::json::Error> {
                $(let mut $f = None;)*
                const NAMES: &[&str] = &[$(concat!(stringify!($f) $(, "|", $alias)*)),*];
                r.object($crate::decode_struct!(@deny $($deny)?), NAMES, &mut |i, r| {
                    let mut at = 0;
                    $(
                        if i == at {
                            return $crate::json::lite::set(&mut $f, r);
                        }
                        at += 1;
                    )*
                    let _ = at;
                    Err($crate::json::Error(None))
                })?;
                // One match for every required field: one failure path, not a drop of
                // the fields read so far after each missing one.
                match ($($crate::decode_struct!(@slot $f $($opt)?),)*) {
                    ($(Some($f),)*) => Ok(Self { $($f,)* }),
                    _ => Err($crate::json::Error(None)),
                }
            }
        }
    };
    (@deny deny_unknown_fields) => { true };
    (@deny) => { false };
    (@slot $f:ident) => { $f };
    (@slot $f:ident opt) => { Some($f.unwrap_or_default()) };
}
pub use crate::decode_struct;

/// Hostile variants of a good message for the differential tests (here and in
/// the widget's): a message's JSON text with, at any depth, fields dropped,
/// doubled, renamed to a stranger or an alias, and values swapped for another
/// type, an out-of-range number, odd hex, another field's value. Not in the wasm.
#[doc(hidden)]
#[cfg(not(target_arch = "wasm32"))]
pub mod testing {
    use serde_json::Value;

    /// Values of every type and edge a peer could send instead.
    const POOL: &[&str] = &[
        "null",
        "true",
        "false",
        "0",
        "-0",
        "1",
        "-1",
        "255",
        "256",
        "65535",
        "65536",
        "4294967295",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "1.5",
        "1e3",
        "01",
        "\"\"",
        "\"x\"",
        "\"00\"",
        "\"0A\"",
        "\"0a\"",
        "\"abc\"",
        "\"0g\"",
        "\" 00 a4\"",
        "\"\\u0030\\u0030\"",
        "\"\u{e9}\"",
        "[]",
        "{}",
        "[1,\"x\"]",
        "{\"a\":[null]}",
    ];

    /// `good` as JSON text, mutated where `rnd` says (each call: a fresh number).
    /// `names`: field names to add as strangers (aliases, other messages' fields).
    pub fn mutate(good: &Value, names: &[&str], rnd: &mut dyn FnMut() -> u32) -> String {
        let mut out = String::new();
        write(good, names, rnd, &mut out);
        out
    }

    fn write(v: &Value, names: &[&str], rnd: &mut dyn FnMut() -> u32, out: &mut String) {
        if rnd() % 100 < 4 {
            out.push_str(POOL[rnd() as usize % POOL.len()]);
            return;
        }
        match v {
            Value::Object(m) => {
                let members: Vec<(&String, &Value)> = m.iter().collect();
                let mut first = true;
                let mut member = |out: &mut String,
                                  k: &str,
                                  val: Option<&Value>,
                                  rnd: &mut dyn FnMut() -> u32| {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    match val {
                        Some(val) => write(val, names, rnd, out),
                        None => out.push_str(POOL[rnd() as usize % POOL.len()]),
                    }
                };
                out.push('{');
                for (k, val) in &members {
                    match rnd() % 100 {
                        0..=2 => {}
                        3..=4 => {
                            member(out, k, Some(val), rnd);
                            member(out, k, Some(val), rnd);
                        }
                        5..=7 => {
                            let name = ["zz", k].into_iter().chain(names.iter().copied());
                            let name: Vec<&str> = name.collect();
                            let name = name[rnd() as usize % name.len()];
                            let other = members[rnd() as usize % members.len()].1;
                            member(out, name, rnd().is_multiple_of(2).then_some(other), rnd);
                            member(out, k, Some(val), rnd);
                        }
                        _ => member(out, k, Some(val), rnd),
                    }
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                let mut first = true;
                for val in a {
                    if rnd() % 100 < 3 {
                        continue;
                    }
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    write(val, names, rnd, out);
                }
                out.push(']');
            }
            Value::String(s) if rnd() % 100 < 6 => {
                // The same text in the other case (hex, enum names).
                let t: String = if s.chars().any(|c| c.is_ascii_lowercase()) {
                    s.to_ascii_uppercase()
                } else {
                    s.to_ascii_lowercase()
                };
                out.push_str(&serde_json::to_string(&t).unwrap());
            }
            v => out.push_str(&v.to_string()),
        }
    }

    /// serde_json's derive and [`super::decode`] on `text`: the same value or both
    /// refusing; else what each said.
    pub fn agree<T>(text: &str) -> Result<Option<T>, String>
    where
        T: super::Decode + serde::de::DeserializeOwned + PartialEq + core::fmt::Debug,
    {
        let theirs = serde_json::from_str::<T>(text);
        let mine = super::decode::<T>(text.as_bytes()).ok();
        if mine.as_ref() == theirs.as_ref().ok() {
            Ok(mine)
        } else {
            Err(format!(
                "{text}\n  serde_json: {theirs:?}\n  decode: {mine:?}"
            ))
        }
    }

    /// `cases` mutations of `good` (seeded from `seed`, reproducible): the two
    /// decoders agree on each, and accept a fair share (the mutations are not all
    /// refusals). Returns how many were accepted.
    pub fn differential<T>(good: &T, names: &[&str], cases: u32, seed: u64) -> u32
    where
        T: serde::Serialize
            + super::Decode
            + serde::de::DeserializeOwned
            + PartialEq
            + core::fmt::Debug,
    {
        let v = serde_json::to_value(good).unwrap();
        assert_eq!(agree::<T>(&v.to_string()).unwrap().as_ref(), Some(good));
        // xorshift64*: no dependency, the same sequence every run.
        let mut s = seed | 1;
        let mut rnd = move || {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
        };
        let mut accepted = 0;
        for _ in 0..cases {
            let text = mutate(&v, names, &mut rnd);
            match agree::<T>(&text) {
                Ok(Some(_)) => accepted += 1,
                Ok(None) => {}
                Err(e) => panic!("decoders disagree on {e}"),
            }
        }
        accepted
    }
}
