//! JSON for the client halves: `to_string` / `from_str` over serde, with
//! serde_json natively and, in the browser (wasm32), [`lite`]: a small
//! serde data format for Cardpay's messages — objects, arrays, strings,
//! integers, booleans and null; no floats (no message has one). It writes the
//! bytes serde_json writes for the same value (compact, fields in
//! declaration order, the same string escapes), so both ends read each
//! other. Why: serde_json with its error texts and float formatting was a
//! third of the widget's download (docs/widget.md, "Bytes"). The feature
//! `lite-json` uses it natively too (tests: every message through it, both ends).
//! The clients read and write their own messages without serde, through
//! [`lite::Decode`] and [`lite::Encode`] (one codec per message on both targets).

use crate::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A value that is not JSON of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(
    /// What serde_json said (natively); nothing in the browser, where no error text is kept.
    pub Option<String>,
);

impl Error {
    /// Its text, as `Display` writes it; for a `String` without `core::fmt`, which the
    /// wasm leaves out (docs/widget.md, "no_std").
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or("invalid JSON")
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for Error {}

/// `v` as compact JSON. Messages always serialize.
#[cfg(not(any(target_arch = "wasm32", feature = "lite-json")))]
pub fn to_string<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("messages serialize")
}

#[cfg(not(any(target_arch = "wasm32", feature = "lite-json")))]
pub fn from_slice<T: DeserializeOwned>(b: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(b).map_err(|e| Error(Some(e.to_string())))
}

/// `v` as compact JSON. Messages always serialize.
#[cfg(any(target_arch = "wasm32", feature = "lite-json"))]
pub fn to_string<T: Serialize + ?Sized>(v: &T) -> String {
    // No `expect`: the error's `Debug` would ship in the wasm for a panic that never happens.
    lite::to_string(v).unwrap_or_else(|_| panic!("messages serialize"))
}

#[cfg(any(target_arch = "wasm32", feature = "lite-json"))]
pub fn from_slice<T: DeserializeOwned>(b: &[u8]) -> Result<T, Error> {
    lite::from_slice(b)
}

pub fn from_str<T: DeserializeOwned>(s: &str) -> Result<T, Error> {
    from_slice(s.as_bytes())
}

pub fn to_vec<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    to_string(v).into_bytes()
}

/// A unit-only enum that travels as one of a fixed set of strings: `ALL`, `as_str`
/// and `Serialize`/`Deserialize` from that one table, both ends, natively and in the
/// browser (no derived visitor per enum in the widget's download: docs/widget.md,
/// "Figures"). A string outside the table is refused, or with `unknown = V` read as `V`
/// (codes from a newer peer).
macro_rules! wire_strings {
    ($ty:ident { $($v:ident => $s:literal),+ $(,)? } $(unknown = $u:ident)?) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: [Self; [$($s),+].len()] = [$(Self::$v),+];

            /// The variant's string on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$v => $s,)+
                }
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <alloc::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                match Self::ALL.into_iter().find(|v| v.as_str() == s) {
                    Some(v) => Ok(v),
                    None => $crate::json::wire_strings!(@unknown s $($u)?),
                }
            }
        }

        impl $crate::json::lite::Encode for $ty {
            fn encode(&self, w: &mut $crate::json::lite::Writer) {
                w.str(self.as_str());
            }
        }

        impl $crate::json::lite::Decode for $ty {
            fn decode(r: &mut $crate::json::lite::Reader<'_>) -> Result<Self, $crate::json::Error> {
                const NAMES: &[&str] = &[$($s),+];
                match r.one_of(NAMES)? {
                    Some(i) => Ok(Self::ALL[i]),
                    None => $crate::json::wire_strings!(@unknown_decode $($u)?),
                }
            }
        }
    };
    (@unknown_decode $u:ident) => { Ok(Self::$u) };
    (@unknown_decode) => { Err($crate::json::Error(None)) };
    (@unknown $s:ident $u:ident) => { Ok(Self::$u) };
    (@unknown $s:ident) => {
        Err(serde::de::Error::custom(format_args!(
            "unknown variant `{}`",
            $s
        )))
    };
}
pub(crate) use wire_strings;

/// Append `n` in decimal, zero-padded to at least `width` digits, without
/// `core::fmt` (it runs in the wasm): lite's integers and the widget's amounts.
pub fn push_decimal(out: &mut String, mut n: u64, width: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in buf.len() - i..width {
        out.push('0');
    }
    for &d in &buf[i..] {
        out.push(char::from(d));
    }
}

/// The small JSON data format (used in the browser; tested natively against serde_json).
pub mod lite {
    use crate::prelude::*;
    use alloc::borrow::Cow;

    use serde::de::{self, DeserializeSeed, Visitor};
    use serde::ser::{self, Serialize};

    pub use super::Error;

    mod read;
    pub use read::decode_struct;
    #[cfg(not(target_arch = "wasm32"))]
    pub use read::testing;
    pub use read::{decode, set, Decode, Reader, Span};
    mod write;
    pub use write::{codec_struct, encode_struct};
    pub use write::{encode, Encode, Object, Writer};

    impl ser::Error for Error {
        fn custom<T: core::fmt::Display>(_: T) -> Self {
            Error(None)
        }
    }

    impl de::Error for Error {
        fn custom<T: core::fmt::Display>(_: T) -> Self {
            Error(None)
        }
    }

    type R<T> = Result<T, Error>;

    fn fail<T>() -> R<T> {
        Err(Error(None))
    }

    // ---- writing ---------------------------------------------------------

    pub fn to_string<T: Serialize + ?Sized>(v: &T) -> R<String> {
        let mut out = String::new();
        v.serialize(Ser { out: &mut out })?;
        Ok(out)
    }

    #[inline(never)]
    fn write_str(out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.push_str("\\u00");
                    out.push(HEX[(c as usize) >> 4] as char);
                    out.push(HEX[(c as usize) & 15] as char);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    #[inline(never)]
    fn write_u64(out: &mut String, n: u64) {
        super::push_decimal(out, n, 1);
    }

    struct Ser<'a> {
        out: &'a mut String,
    }

    /// An object or array being written; `end`: what closes it.
    struct Compound<'a> {
        out: &'a mut String,
        first: bool,
        end: &'static str,
    }

    impl Compound<'_> {
        fn sep(&mut self) {
            if !self.first {
                self.out.push(',');
            }
            self.first = false;
        }
        fn field<T: Serialize + ?Sized>(&mut self, key: &str, v: &T) -> R<()> {
            self.sep();
            write_str(self.out, key);
            self.out.push(':');
            v.serialize(Ser { out: self.out })
        }
        fn item<T: Serialize + ?Sized>(&mut self, v: &T) -> R<()> {
            self.sep();
            v.serialize(Ser { out: self.out })
        }
        fn close(self) -> R<()> {
            self.out.push_str(self.end);
            Ok(())
        }
    }

    impl<'a> Ser<'a> {
        fn open(self, open: &str, end: &'static str) -> Compound<'a> {
            self.out.push_str(open);
            Compound {
                out: self.out,
                first: true,
                end,
            }
        }
        /// `{"variant":` … `}`
        fn variant(self, variant: &str, open: &str, end: &'static str) -> Compound<'a> {
            self.out.push('{');
            write_str(self.out, variant);
            self.out.push(':');
            self.open(open, end)
        }
    }

    impl<'a> ser::Serializer for Ser<'a> {
        type Ok = ();
        type Error = Error;
        type SerializeSeq = Compound<'a>;
        type SerializeTuple = Compound<'a>;
        type SerializeTupleStruct = Compound<'a>;
        type SerializeTupleVariant = Compound<'a>;
        type SerializeMap = Compound<'a>;
        type SerializeStruct = Compound<'a>;
        type SerializeStructVariant = Compound<'a>;

        fn serialize_bool(self, v: bool) -> R<()> {
            self.out.push_str(if v { "true" } else { "false" });
            Ok(())
        }
        fn serialize_i8(self, v: i8) -> R<()> {
            self.serialize_i64(v.into())
        }
        fn serialize_i16(self, v: i16) -> R<()> {
            self.serialize_i64(v.into())
        }
        fn serialize_i32(self, v: i32) -> R<()> {
            self.serialize_i64(v.into())
        }
        fn serialize_i64(self, v: i64) -> R<()> {
            if v < 0 {
                self.out.push('-');
            }
            write_u64(self.out, v.unsigned_abs());
            Ok(())
        }
        fn serialize_u8(self, v: u8) -> R<()> {
            self.serialize_u64(v.into())
        }
        fn serialize_u16(self, v: u16) -> R<()> {
            self.serialize_u64(v.into())
        }
        fn serialize_u32(self, v: u32) -> R<()> {
            self.serialize_u64(v.into())
        }
        fn serialize_u64(self, v: u64) -> R<()> {
            write_u64(self.out, v);
            Ok(())
        }
        fn serialize_f32(self, _: f32) -> R<()> {
            fail()
        }
        fn serialize_f64(self, _: f64) -> R<()> {
            fail()
        }
        fn serialize_char(self, v: char) -> R<()> {
            let mut b = [0u8; 4];
            self.serialize_str(v.encode_utf8(&mut b))
        }
        fn serialize_str(self, v: &str) -> R<()> {
            write_str(self.out, v);
            Ok(())
        }
        fn serialize_bytes(self, v: &[u8]) -> R<()> {
            let mut s = self.open("[", "]");
            for b in v {
                s.item(b)?;
            }
            s.close()
        }
        fn serialize_none(self) -> R<()> {
            self.serialize_unit()
        }
        fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> R<()> {
            v.serialize(self)
        }
        fn serialize_unit(self) -> R<()> {
            self.out.push_str("null");
            Ok(())
        }
        fn serialize_unit_struct(self, _: &'static str) -> R<()> {
            self.serialize_unit()
        }
        fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> R<()> {
            self.serialize_str(variant)
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> R<()> {
            v.serialize(self)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            v: &T,
        ) -> R<()> {
            self.out.push('{');
            write_str(self.out, variant);
            self.out.push(':');
            v.serialize(Ser { out: self.out })?;
            self.out.push('}');
            Ok(())
        }
        fn serialize_seq(self, _: Option<usize>) -> R<Compound<'a>> {
            Ok(self.open("[", "]"))
        }
        fn serialize_tuple(self, _: usize) -> R<Compound<'a>> {
            Ok(self.open("[", "]"))
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> R<Compound<'a>> {
            Ok(self.open("[", "]"))
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            _: usize,
        ) -> R<Compound<'a>> {
            Ok(self.variant(variant, "[", "]}"))
        }
        fn serialize_map(self, _: Option<usize>) -> R<Compound<'a>> {
            Ok(self.open("{", "}"))
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> R<Compound<'a>> {
            Ok(self.open("{", "}"))
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            _: usize,
        ) -> R<Compound<'a>> {
            Ok(self.variant(variant, "{", "}}"))
        }
    }

    impl ser::SerializeSeq for Compound<'_> {
        type Ok = ();
        type Error = Error;
        fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> R<()> {
            self.item(v)
        }
        fn end(self) -> R<()> {
            self.close()
        }
    }
    impl ser::SerializeTuple for Compound<'_> {
        type Ok = ();
        type Error = Error;
        fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> R<()> {
            self.item(v)
        }
        fn end(self) -> R<()> {
            self.close()
        }
    }
    impl ser::SerializeTupleStruct for Compound<'_> {
        type Ok = ();
        type Error = Error;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> R<()> {
            self.item(v)
        }
        fn end(self) -> R<()> {
            self.close()
        }
    }
    impl ser::SerializeTupleVariant for Compound<'_> {
        type Ok = ();
        type Error = Error;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> R<()> {
            self.item(v)
        }
        fn end(self) -> R<()> {
            self.close()
        }
    }
    impl ser::SerializeMap for Compound<'_> {
        type Ok = ();
        type Error = Error;
        fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> R<()> {
            self.sep();
            // Keys are strings (struct fields, flattened maps).
            k.serialize(Ser { out: self.out })
        }
        fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> R<()> {
            self.out.push(':');
            v.serialize(Ser { out: self.out })
        }
        fn end(self) -> R<()> {
            self.close()
        }
    }
    impl ser::SerializeStruct for Compound<'_> {
        type Ok = ();
        type Error = Error;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, k: &'static str, v: &T) -> R<()> {
            self.field(k, v)
        }
        fn end(self) -> R<()> {
            self.close()
        }
    }
    impl ser::SerializeStructVariant for Compound<'_> {
        type Ok = ();
        type Error = Error;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, k: &'static str, v: &T) -> R<()> {
            self.field(k, v)
        }
        fn end(self) -> R<()> {
            self.close()
        }
    }

    // ---- reading ---------------------------------------------------------

    /// Deepest nesting accepted (a hostile peer cannot exhaust the stack).
    const MAX_DEPTH: u32 = 64;

    pub fn from_slice<T: de::DeserializeOwned>(b: &[u8]) -> R<T> {
        let mut d = De {
            s: b,
            i: 0,
            depth: 0,
        };
        let v = T::deserialize(&mut d)?;
        d.ws();
        if d.i != d.s.len() {
            return fail();
        }
        Ok(v)
    }

    struct De<'de> {
        s: &'de [u8],
        i: usize,
        depth: u32,
    }

    impl<'de> De<'de> {
        #[inline(never)]
        fn ws(&mut self) {
            while self
                .s
                .get(self.i)
                .is_some_and(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
            {
                self.i += 1;
            }
        }
        #[inline(never)]
        fn peek(&mut self) -> R<u8> {
            self.ws();
            self.s.get(self.i).copied().ok_or(Error(None))
        }
        #[inline(never)]
        fn eat(&mut self, b: u8) -> R<()> {
            if self.peek()? != b {
                return fail();
            }
            self.i += 1;
            Ok(())
        }
        #[inline(never)]
        fn word(&mut self, w: &[u8]) -> R<()> {
            if self.s[self.i..].starts_with(w) {
                self.i += w.len();
                Ok(())
            } else {
                fail()
            }
        }
        fn hex4(&mut self) -> R<u32> {
            let h = self.s.get(self.i..self.i + 4).ok_or(Error(None))?;
            self.i += 4;
            let h = core::str::from_utf8(h).map_err(|_| Error(None))?;
            u32::from_str_radix(h, 16).map_err(|_| Error(None))
        }
        /// A string (the opening quote is next).
        #[inline(never)]
        fn string(&mut self) -> R<Cow<'de, str>> {
            self.eat(b'"')?;
            let start = self.i;
            // Fast path: no escapes.
            loop {
                match self.s.get(self.i) {
                    None => return fail(),
                    Some(b'"') => {
                        let raw = &self.s[start..self.i];
                        self.i += 1;
                        return core::str::from_utf8(raw)
                            .map(Cow::Borrowed)
                            .map_err(|_| Error(None));
                    }
                    Some(b'\\') => break,
                    Some(b) if *b < 0x20 => return fail(),
                    Some(_) => self.i += 1,
                }
            }
            let mut out: Vec<u8> = self.s[start..self.i].to_vec();
            loop {
                match self.s.get(self.i) {
                    None => return fail(),
                    Some(b'"') => {
                        self.i += 1;
                        return String::from_utf8(out)
                            .map(Cow::Owned)
                            .map_err(|_| Error(None));
                    }
                    Some(b'\\') => {
                        self.i += 1;
                        let e = *self.s.get(self.i).ok_or(Error(None))?;
                        self.i += 1;
                        let c = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let hi = self.hex4()?;
                                let code = if (0xD800..0xDC00).contains(&hi) {
                                    self.word(b"\\u")?;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return fail();
                                    }
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    hi
                                };
                                char::from_u32(code).ok_or(Error(None))?
                            }
                            _ => return fail(),
                        };
                        let mut b = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                    }
                    Some(b) if *b < 0x20 => return fail(),
                    Some(b) => {
                        out.push(*b);
                        self.i += 1;
                    }
                }
            }
        }
        /// An integer (no fraction, no exponent: no message carries one).
        fn integer<V: Visitor<'de>>(&mut self, v: V) -> R<V::Value> {
            match self.number()? {
                (false, n) => v.visit_u64(n),
                (true, n) => v.visit_i64(-i64::try_from(n).map_err(|_| Error(None))?),
            }
        }
        /// Sign and magnitude of an integer.
        #[inline(never)]
        fn number(&mut self) -> R<(bool, u64)> {
            let neg = self.s.get(self.i) == Some(&b'-');
            if neg {
                self.i += 1;
            }
            let start = self.i;
            let mut n: u64 = 0;
            while let Some(d) = self.s.get(self.i).filter(|b| b.is_ascii_digit()) {
                n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d - b'0')))
                    .ok_or(Error(None))?;
                self.i += 1;
            }
            let digits = self.i - start;
            let leading_zero = digits > 1 && self.s[start] == b'0';
            if digits == 0 || leading_zero || matches!(self.s.get(self.i), Some(b'.' | b'e' | b'E'))
            {
                return fail();
            }
            Ok((neg, n))
        }
        /// Any JSON number, fraction and exponent too: a value skipped (an unknown
        /// field's) may be one, as serde_json skips it.
        #[inline(never)]
        fn any_number(&mut self) -> R<()> {
            let digits = |d: &mut Self| {
                let start = d.i;
                while d.s.get(d.i).is_some_and(u8::is_ascii_digit) {
                    d.i += 1;
                }
                d.i - start
            };
            if self.s.get(self.i) == Some(&b'-') {
                self.i += 1;
            }
            let first = self.s.get(self.i).copied();
            let n = digits(self);
            if n == 0 || (n > 1 && first == Some(b'0')) {
                return fail();
            }
            if self.s.get(self.i) == Some(&b'.') {
                self.i += 1;
                if digits(self) == 0 {
                    return fail();
                }
            }
            if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
                self.i += 1;
                if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                    self.i += 1;
                }
                if digits(self) == 0 {
                    return fail();
                }
            }
            Ok(())
        }
        fn deeper(&mut self) -> R<()> {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return fail();
            }
            Ok(())
        }
        /// Skip one value, any JSON value (serde_json's `IgnoredAny`), without serde:
        /// the decoders (`read`) skip unknown fields with it.
        #[inline(never)]
        fn skip(&mut self) -> R<()> {
            match self.peek()? {
                open @ (b'[' | b'{') => {
                    let (object, close) = (open == b'{', open + 2); // `]` and `}`
                    self.i += 1;
                    self.deeper()?;
                    let mut first = true;
                    while self.peek()? != close {
                        if !first {
                            self.eat(b',')?;
                        }
                        first = false;
                        if object {
                            self.string()?;
                            self.eat(b':')?;
                        }
                        self.skip()?;
                    }
                    self.i += 1;
                    self.depth -= 1;
                    Ok(())
                }
                b'"' => self.string().map(|_| ()),
                b'-' | b'0'..=b'9' => self.any_number(),
                b'n' => self.word(b"null"),
                b't' => self.word(b"true"),
                b'f' => self.word(b"false"),
                _ => fail(),
            }
        }
    }

    /// `deserialize_x` methods that do what another one does.
    macro_rules! forward_typed {
        ($($to:ident: $($from:ident)*;)*) => {$($(
            fn $from<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
                self.$to(v)
            }
        )*)*};
    }

    impl<'de> de::Deserializer<'de> for &mut De<'de> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
            match self.peek()? {
                b'n' => {
                    self.word(b"null")?;
                    v.visit_unit()
                }
                b't' => {
                    self.word(b"true")?;
                    v.visit_bool(true)
                }
                b'f' => {
                    self.word(b"false")?;
                    v.visit_bool(false)
                }
                b'"' => match self.string()? {
                    Cow::Borrowed(s) => v.visit_borrowed_str(s),
                    Cow::Owned(s) => v.visit_string(s),
                },
                b'[' => {
                    self.i += 1;
                    self.deeper()?;
                    let r = v.visit_seq(Seq {
                        de: &mut *self,
                        first: true,
                    })?;
                    self.eat(b']')?;
                    self.depth -= 1;
                    Ok(r)
                }
                b'{' => {
                    self.i += 1;
                    self.deeper()?;
                    let r = v.visit_map(Map {
                        de: &mut *self,
                        first: true,
                    })?;
                    self.eat(b'}')?;
                    self.depth -= 1;
                    Ok(r)
                }
                b'-' | b'0'..=b'9' => self.integer(v),
                _ => fail(),
            }
        }

        fn deserialize_option<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
            if self.peek()? == b'n' {
                self.word(b"null")?;
                v.visit_none()
            } else {
                v.visit_some(self)
            }
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> R<V::Value> {
            v.visit_newtype_struct(self)
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            _: &'static [&'static str],
            v: V,
        ) -> R<V::Value> {
            match self.peek()? {
                // "variant": a unit variant
                b'"' => v.visit_enum(Variant {
                    de: self,
                    bare: true,
                }),
                // {"variant": value}
                b'{' => {
                    self.i += 1;
                    self.deeper()?;
                    let r = v.visit_enum(Variant {
                        de: &mut *self,
                        bare: false,
                    })?;
                    self.eat(b'}')?;
                    self.depth -= 1;
                    Ok(r)
                }
                _ => fail(),
            }
        }

        fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
            self.skip()?;
            v.visit_unit()
        }

        // Typed entry points: each visitor gets only the branch its type can take,
        // not the whole `deserialize_any` (which per message type is most of the
        // wasm's JSON code: a struct's visitor would carry its `visit_seq` too).
        fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
            match self.peek()? {
                b't' => {
                    self.word(b"true")?;
                    v.visit_bool(true)
                }
                b'f' => {
                    self.word(b"false")?;
                    v.visit_bool(false)
                }
                _ => fail(),
            }
        }

        fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
            if !matches!(self.peek()?, b'-' | b'0'..=b'9') {
                return fail();
            }
            self.integer(v)
        }

        fn deserialize_str<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
            match self.string()? {
                Cow::Borrowed(s) => v.visit_borrowed_str(s),
                Cow::Owned(s) => v.visit_string(s),
            }
        }

        fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
            self.eat(b'[')?;
            self.deeper()?;
            let r = v.visit_seq(Seq {
                de: &mut *self,
                first: true,
            })?;
            self.eat(b']')?;
            self.depth -= 1;
            Ok(r)
        }

        /// Objects only: a struct is never written as an array.
        fn deserialize_map<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
            self.eat(b'{')?;
            self.deeper()?;
            let r = v.visit_map(Map {
                de: &mut *self,
                first: true,
            })?;
            self.eat(b'}')?;
            self.depth -= 1;
            Ok(r)
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            _: &'static [&'static str],
            v: V,
        ) -> R<V::Value> {
            self.deserialize_map(v)
        }

        fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> R<V::Value> {
            self.deserialize_seq(v)
        }

        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            _: usize,
            v: V,
        ) -> R<V::Value> {
            self.deserialize_seq(v)
        }

        fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
            self.peek()?;
            self.word(b"null")?;
            v.visit_unit()
        }

        fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> R<V::Value> {
            self.deserialize_unit(v)
        }

        serde::forward_to_deserialize_any! {
            i128 u128 f32 f64 char bytes byte_buf
        }

        forward_typed! {
            deserialize_u64: deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
                deserialize_u8 deserialize_u16 deserialize_u32;
            deserialize_str: deserialize_string deserialize_identifier;
        }
    }

    struct Seq<'a, 'de> {
        de: &'a mut De<'de>,
        first: bool,
    }

    impl<'de> de::SeqAccess<'de> for Seq<'_, 'de> {
        type Error = Error;
        fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> R<Option<T::Value>> {
            if self.de.peek()? == b']' {
                return Ok(None);
            }
            if !self.first {
                self.de.eat(b',')?;
            }
            self.first = false;
            seed.deserialize(&mut *self.de).map(Some)
        }
    }

    struct Map<'a, 'de> {
        de: &'a mut De<'de>,
        first: bool,
    }

    impl<'de> de::MapAccess<'de> for Map<'_, 'de> {
        type Error = Error;
        fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> R<Option<K::Value>> {
            if self.de.peek()? == b'}' {
                return Ok(None);
            }
            if !self.first {
                self.de.eat(b',')?;
            }
            self.first = false;
            if self.de.peek()? != b'"' {
                return fail();
            }
            let key = seed.deserialize(&mut *self.de)?;
            self.de.eat(b':')?;
            Ok(Some(key))
        }
        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> R<V::Value> {
            seed.deserialize(&mut *self.de)
        }
    }

    /// `{"variant": value}` (the brace is eaten by the caller), or `bare`:
    /// `"variant"`, a unit variant. One access for both, so each enum's visitor
    /// is compiled once.
    struct Variant<'a, 'de> {
        de: &'a mut De<'de>,
        bare: bool,
    }

    impl<'de, 'a> de::EnumAccess<'de> for Variant<'a, 'de> {
        type Error = Error;
        type Variant = Self;
        fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> R<(V::Value, Self)> {
            let name = seed.deserialize(&mut *self.de)?;
            if !self.bare {
                self.de.eat(b':')?;
            }
            Ok((name, self))
        }
    }

    impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
        type Error = Error;
        fn unit_variant(self) -> R<()> {
            if self.bare {
                return Ok(());
            }
            de::Deserialize::deserialize(&mut *self.de)
        }
        fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> R<T::Value> {
            if self.bare {
                return fail();
            }
            seed.deserialize(&mut *self.de)
        }
        fn tuple_variant<V: Visitor<'de>>(self, _: usize, v: V) -> R<V::Value> {
            if self.bare {
                return fail();
            }
            de::Deserializer::deserialize_seq(&mut *self.de, v)
        }
        fn struct_variant<V: Visitor<'de>>(self, _: &'static [&'static str], v: V) -> R<V::Value> {
            if self.bare {
                return fail();
            }
            de::Deserializer::deserialize_map(&mut *self.de, v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lite;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        PaymentServer,
        Client,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Tagged {
        A { x: u32 },
        B { s: String },
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Outer {
        Result(Inner),
        Error { code: String },
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Inner {
        n: u64,
        neg: i32,
        s: String,
        opt: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skipped: Option<bool>,
        v: Vec<u8>,
        mode: Mode,
        t: Tagged,
    }

    fn sample(s: &str) -> Inner {
        Inner {
            n: u64::MAX,
            neg: -42,
            s: s.into(),
            opt: None,
            skipped: None,
            v: vec![0, 1, 255],
            mode: Mode::PaymentServer,
            t: Tagged::B { s: "b".into() },
        }
    }

    #[test]
    fn writes_what_serde_json_writes_and_reads_it_back() {
        for s in [
            "plain",
            "quote \" backslash \\ slash / nl \n tab \t cr \r",
            "ctl \u{1} \u{1f} del \u{7f} bell \u{8} ff \u{c}",
            "ünïcödé € 𝄞 <&>",
        ] {
            let v = sample(s);
            let mine = lite::to_string(&v).unwrap();
            assert_eq!(mine, serde_json::to_string(&v).unwrap(), "{s}");
            assert_eq!(lite::from_slice::<Inner>(mine.as_bytes()).unwrap(), v);
            let o = Outer::Result(v.clone());
            let mine = lite::to_string(&o).unwrap();
            assert_eq!(mine, serde_json::to_string(&o).unwrap());
            assert_eq!(lite::from_slice::<Outer>(mine.as_bytes()).unwrap(), o);
        }
        let e = Outer::Error { code: "x".into() };
        assert_eq!(
            lite::to_string(&e).unwrap(),
            serde_json::to_string(&e).unwrap()
        );
        assert_eq!(
            lite::from_slice::<Outer>(br#" { "error" : { "code" : "x" } } "#).unwrap(),
            e
        );
    }

    #[test]
    fn reads_escapes_whitespace_unknown_fields_and_refuses_what_is_not_json() {
        let v: Inner = lite::from_slice(
            br#"{ "extra": {"deep": [1, {"a": null}, "s\"x"]}, "n": 7, "neg": -1,
                 "s": "a\u00e9\ud834\udd1e\/", "opt": 3, "v": [], "mode": "client",
                 "t": {"kind": "a", "x": 9}, "skipped": true }"#,
        )
        .unwrap();
        assert_eq!(v.s, "aé𝄞/");
        assert_eq!((v.n, v.neg, v.opt, v.skipped), (7, -1, Some(3), Some(true)));
        assert_eq!((v.mode, v.t), (Mode::Client, Tagged::A { x: 9 }));
        let good = lite::to_string(&sample("x")).unwrap();
        for bad in [
            good.replace("255", "256"),
            good.replace("255", "2.5"),
            good.replace("255", "1e3"),
            good.replace("255", "0255"),
            good.replace("\"neg\":-42", "\"neg\":-99999999999"),
            good.replace("payment_server", "nope"),
            format!("{good} x"),
            good[..good.len() - 1].to_string(),
            good.replace("\"x\"", "\"\u{1}\""),
            "[".repeat(200) + &"]".repeat(200),
        ] {
            assert!(lite::from_slice::<Inner>(bad.as_bytes()).is_err(), "{bad}");
        }
        // A struct is an object: the array form serde_json also takes is refused.
        assert!(lite::from_slice::<Outer>(br#"{"error": ["x"]}"#).is_err());
        assert!(serde_json::from_slice::<Outer>(br#"{"error": ["x"]}"#).is_ok());
        // A bare string names a unit variant only.
        assert!(lite::from_slice::<Outer>(br#""error""#).is_err());
        assert_eq!(
            lite::from_slice::<Mode>(br#"{"client": null}"#),
            Ok(Mode::Client)
        );
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(lite::from_slice::<serde::de::IgnoredAny>(deep.as_bytes()).is_err());
        assert!(lite::from_slice::<serde::de::IgnoredAny>(b"[[1],{\"a\":[]}]").is_ok());
    }

    /// What `#[serde(rename_all = "snake_case")]` made of a variant name.
    fn snake(name: &str) -> String {
        let mut out = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }

    /// Each `wire_strings!` enum: every variant's string is the one serde's derive
    /// wrote before (snake case of its name), both codecs write it and read it back,
    /// and a string outside the table is refused or read as the `unknown` variant.
    fn check_table<T>(all: &[T], unknown: Option<T>)
    where
        T: Copy + PartialEq + core::fmt::Debug + Serialize + serde::de::DeserializeOwned,
    {
        for v in all {
            let j = format!("\"{}\"", snake(&format!("{v:?}")));
            assert_eq!(serde_json::to_string(v).unwrap(), j);
            assert_eq!(lite::to_string(v).unwrap(), j);
            assert_eq!(&serde_json::from_str::<T>(&j).unwrap(), v);
            assert_eq!(&lite::from_slice::<T>(j.as_bytes()).unwrap(), v);
        }
        for bad in [r#""from_the_future""#, r#""""#] {
            assert_eq!(serde_json::from_str::<T>(bad).ok(), unknown, "{bad}");
            assert_eq!(lite::from_slice::<T>(bad.as_bytes()).ok(), unknown, "{bad}");
        }
        for bad in ["7", "null", "{}", "[]", r#"{"x":null}"#] {
            assert!(serde_json::from_str::<T>(bad).is_err(), "{bad}");
            assert!(lite::from_slice::<T>(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn wire_string_enums_keep_their_strings() {
        use crate::bridge_msg::{ErrorCode, Limit};
        use crate::load::{LoadRecoverStatus, LoadStatus};
        use crate::purchase::{PurchaseStatus, RecoverStatus};
        use crate::session::VerifyMode;
        use crate::types::PurseId;
        use crate::wire::ApiCode;
        check_table(&ApiCode::ALL, Some(ApiCode::Other));
        check_table(&ErrorCode::ALL, Some(ErrorCode::Unknown));
        check_table(&Limit::ALL, Some(Limit::Unknown));
        check_table(&VerifyMode::ALL, None);
        check_table(&PurchaseStatus::ALL, None);
        check_table(&RecoverStatus::ALL, None);
        check_table(&LoadStatus::ALL, None);
        check_table(&LoadRecoverStatus::ALL, None);
        check_table(&PurseId::ALL, None);
        assert_eq!(ApiCode::ALL.len(), 31);
        assert_eq!(ErrorCode::ALL.len(), 15);
    }

    mod differential {
        use super::*;
        use proptest::prelude::*;
        use serde_json::{json, Value};

        /// Any JSON value a peer could put in a field: every type, right or wrong.
        fn any_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                (0u64..300).prop_map(Value::from),
                "[a-z_ \"\\\\\u{1}é𝄞]{0,8}".prop_map(Value::from),
                prop_oneof![Just("client"), Just("payment_server"), Just("a"), Just("b")]
                    .prop_map(Value::from),
            ];
            leaf.prop_recursive(2, 8, 3, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    (
                        prop_oneof![Just("kind"), Just("x"), Just("s"), Just("q")],
                        inner.clone()
                    )
                        .prop_map(|(k, v)| json!({ k: v })),
                    (prop_oneof![Just("a"), Just("b"), Just("c")], inner)
                        .prop_map(|(k, v)| json!({"kind": k, "x": v.clone(), "s": v})),
                ]
            })
        }

        /// An `Inner`-shaped object: one field (the victim) any value at all, the
        /// others mostly right, sometimes missing; sometimes a stranger field.
        fn object() -> impl Strategy<Value = Value> {
            let good = serde_json::to_value(sample("x")).unwrap();
            let keys = ["n", "neg", "s", "opt", "skipped", "v", "mode", "t", "extra"];
            (
                0..keys.len(),
                any_value(),
                proptest::collection::vec(0u8..10, keys.len()),
            )
                .prop_map(move |(victim, v, missing)| {
                    let mut o = serde_json::Map::new();
                    for (i, k) in keys.iter().enumerate() {
                        if i == victim {
                            o.insert(k.to_string(), v.clone());
                        } else if let Some(g) = good.get(*k).filter(|_| missing[i] != 0) {
                            o.insert(k.to_string(), g.clone());
                        }
                    }
                    Value::Object(o)
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            /// lite takes exactly what serde_json takes, as the same value, whatever
            /// types a peer puts where (the typed entry points refuse no more and no less).
            #[test]
            fn lite_reads_what_serde_json_reads(v in object()) {
                let text = serde_json::to_vec(&v).unwrap();
                let theirs = serde_json::from_slice::<Inner>(&text).ok();
                let mine = lite::from_slice::<Inner>(&text).ok();
                prop_assert_eq!(&mine, &theirs, "{}", v);
                if let Some(m) = mine {
                    prop_assert_eq!(lite::to_string(&m).unwrap(), serde_json::to_string(&m).unwrap());
                }
            }
        }
    }
}
