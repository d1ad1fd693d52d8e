//! The JSON messages between the extension and the bridge (DESIGN §5).
//!
//! Request: `{"id": 7, "type": "transmit", "origin": "https://pay.example", "handle": 1, "apdu": "80 5C 00 00 04"}`
//! Reply:   `{"id": 7, "result": {"rapdu": "000003E89000"}}`
//! Error:   `{"id": 7, "error": {"code": "forbidden_apdu", "message": "..."}}`
//! Event:   `{"event": "card_inserted", "reader": "Virtual PCD 00 00"}`
//!
//! `origin` is added by the extension's service worker from the browser's
//! sender information, never taken from the page.

use serde::Serialize;
use serde_json::{json, Map, Value};

/// Protocol version reported by `hello`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest accepted string id / origin / reader name.
pub const MAX_STR: usize = 512;

/// Stable error codes. The JSON spelling (`snake_case`) is the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NoService,
    NoReader,
    NoCard,
    CardRemoved,
    ForbiddenApdu,
    /// A per-origin rate limit (APDUs, or VERIFY with a PIN) refused the APDU;
    /// nothing was sent to the card. `retry_after_ms` says when one more passes.
    RateLimited,
    ForbiddenOrigin,
    BadRequest,
    Timeout,
    /// Anything PC/SC reports that has no better code (e.g. sharing violation).
    CardError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoService => "no_service",
            ErrorCode::NoReader => "no_reader",
            ErrorCode::NoCard => "no_card",
            ErrorCode::CardRemoved => "card_removed",
            ErrorCode::ForbiddenApdu => "forbidden_apdu",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ForbiddenOrigin => "forbidden_origin",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Timeout => "timeout",
            ErrorCode::CardError => "card_error",
        }
    }
}

/// An error answer: a code and plain words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct BridgeError {
    pub code: ErrorCode,
    pub message: String,
    /// With `rate_limited`: milliseconds until the request would pass.
    pub retry_after_ms: Option<u64>,
}

impl BridgeError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }
    /// `rate_limited`, with the wait until one more request passes.
    pub fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        // round to the millisecond (the bucket's float arithmetic is not exact)
        let ms = (retry_after.as_secs_f64() * 1000.0).round().max(1.0) as u64;
        Self {
            code: ErrorCode::RateLimited,
            message: message.into(),
            retry_after_ms: Some(ms),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

/// Request id, echoed in the reply: a JSON number (u64) or a short string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Id {
    Num(u64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Hello,
    Status { reader: Option<String> },
    Readers,
    Connect { reader: String },
    Transmit { handle: u32, apdu: Vec<u8> },
    Disconnect { handle: u32 },
}

impl Body {
    pub fn name(&self) -> &'static str {
        match self {
            Body::Hello => "hello",
            Body::Status { .. } => "status",
            Body::Readers => "readers",
            Body::Connect { .. } => "connect",
            Body::Transmit { .. } => "transmit",
            Body::Disconnect { .. } => "disconnect",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: Id,
    /// The sender's origin as the browser reported it (attached by the extension).
    pub origin: Option<String>,
    pub body: Body,
}

/// A request that could not be parsed; `id` is set when it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFailure {
    pub id: Option<Id>,
    pub error: BridgeError,
}

fn fail(id: Option<Id>, msg: impl Into<String>) -> ParseFailure {
    ParseFailure {
        id,
        error: BridgeError::bad_request(msg),
    }
}

fn get_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    id: &Id,
) -> Result<Option<&'a str>, ParseFailure> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_STR => Ok(Some(s)),
        Some(Value::String(_)) => Err(fail(Some(id.clone()), format!("`{key}` is too long"))),
        Some(_) => Err(fail(Some(id.clone()), format!("`{key}` must be a string"))),
    }
}

fn get_handle(obj: &Map<String, Value>, id: &Id) -> Result<u32, ParseFailure> {
    obj.get("handle")
        .and_then(Value::as_u64)
        .and_then(|h| u32::try_from(h).ok())
        .ok_or_else(|| fail(Some(id.clone()), "`handle` must be a non-negative integer"))
}

/// Decode hex, tolerating spaces (`"00 A4 04 00"`).
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    hex::decode(compact).ok()
}

/// Parse one message payload into a request. Never panics.
pub fn parse_request(payload: &[u8]) -> Result<Request, ParseFailure> {
    let text = std::str::from_utf8(payload).map_err(|_| fail(None, "message is not UTF-8"))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| fail(None, format!("message is not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(fail(None, "message must be a JSON object"));
    };
    let id = match obj.get("id") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) => Id::Num(n),
            None => {
                return Err(fail(
                    None,
                    "`id` must be a non-negative integer or a string",
                ))
            }
        },
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => Id::Str(s.clone()),
        _ => return Err(fail(None, "missing or invalid `id`")),
    };
    let origin = get_str(&obj, "origin", &id)?.map(str::to_owned);
    let ty = get_str(&obj, "type", &id)?.ok_or_else(|| fail(Some(id.clone()), "missing `type`"))?;
    let body = match ty {
        "hello" => Body::Hello,
        "status" => Body::Status {
            reader: get_str(&obj, "reader", &id)?.map(str::to_owned),
        },
        "readers" => Body::Readers,
        "connect" => Body::Connect {
            reader: get_str(&obj, "reader", &id)?
                .ok_or_else(|| fail(Some(id.clone()), "`connect` needs `reader`"))?
                .to_owned(),
        },
        "transmit" => {
            let handle = get_handle(&obj, &id)?;
            let apdu = get_str(&obj, "apdu", &id)?
                .and_then(parse_hex)
                .ok_or_else(|| fail(Some(id.clone()), "`apdu` must be a hex string"))?;
            Body::Transmit { handle, apdu }
        }
        "disconnect" => Body::Disconnect {
            handle: get_handle(&obj, &id)?,
        },
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(fail(Some(id), format!("unknown type `{shown}`")));
        }
    };
    Ok(Request { id, origin, body })
}

/// `{"id": .., "result": ..}`
pub fn reply(id: &Id, result: Value) -> Value {
    json!({ "id": id, "result": result })
}

/// `{"id": .., "error": {"code": .., "message": ..[, "retry_after_ms": ..]}}`
/// (`id` null when unknown).
pub fn error_reply(id: Option<&Id>, err: &BridgeError) -> Value {
    let mut v = json!({ "id": id, "error": { "code": err.code, "message": err.message } });
    if let Some(ms) = err.retry_after_ms {
        v["error"]["retry_after_ms"] = json!(ms);
    }
    v
}

/// `{"event": name, "reader": ..}`
pub fn event(name: &str, reader: &str) -> Value {
    json!({ "event": name, "reader": reader })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_types() {
        let r = parse_request(br#"{"id":1,"type":"hello"}"#).unwrap();
        assert_eq!(r.body, Body::Hello);
        assert_eq!(r.origin, None);
        let r =
            parse_request(br#"{"id":"a","type":"readers","origin":"http://127.0.0.1:1"}"#).unwrap();
        assert_eq!(r.id, Id::Str("a".into()));
        assert_eq!(r.origin.as_deref(), Some("http://127.0.0.1:1"));
        let r = parse_request(br#"{"id":2,"type":"connect","reader":"R 0"}"#).unwrap();
        assert_eq!(
            r.body,
            Body::Connect {
                reader: "R 0".into()
            }
        );
        let r = parse_request(br#"{"id":3,"type":"transmit","handle":4,"apdu":"80 5c 00 00 04"}"#)
            .unwrap();
        assert_eq!(
            r.body,
            Body::Transmit {
                handle: 4,
                apdu: vec![0x80, 0x5C, 0, 0, 4]
            }
        );
        let r = parse_request(br#"{"id":5,"type":"disconnect","handle":4}"#).unwrap();
        assert_eq!(r.body, Body::Disconnect { handle: 4 });
        let r = parse_request(br#"{"id":6,"type":"status"}"#).unwrap();
        assert_eq!(r.body, Body::Status { reader: None });
    }

    #[test]
    fn invalid_utf8_and_json_are_bad_requests_without_id() {
        for bad in [
            &b"\xff\xfe{}"[..],
            b"",
            b"{",
            b"[1,2]",
            b"null",
            b"{\"id\":1,\"type\":\"hello\"} trailing",
        ] {
            let f = parse_request(bad).unwrap_err();
            assert_eq!(f.error.code, ErrorCode::BadRequest, "{bad:?}");
            assert_eq!(f.id, None);
        }
    }

    #[test]
    fn bad_fields_keep_the_id() {
        for (bad, msg) in [
            (r#"{"id":1}"#, "missing `type`"),
            (r#"{"id":1,"type":"nope"}"#, "unknown type"),
            (r#"{"id":1,"type":"connect"}"#, "needs `reader`"),
            (
                r#"{"id":1,"type":"transmit","handle":1,"apdu":"zz"}"#,
                "hex",
            ),
            (
                r#"{"id":1,"type":"transmit","handle":-1,"apdu":"00"}"#,
                "handle",
            ),
            (
                r#"{"id":1,"type":"transmit","handle":4294967296,"apdu":"00"}"#,
                "handle",
            ),
            (r#"{"id":1,"type":"disconnect","handle":"1"}"#, "handle"),
            (r#"{"id":1,"type":"hello","origin":5}"#, "origin"),
        ] {
            let f = parse_request(bad.as_bytes()).unwrap_err();
            assert_eq!(f.id, Some(Id::Num(1)), "{bad}");
            assert!(f.error.message.contains(msg), "{bad}: {}", f.error.message);
        }
    }

    #[test]
    fn invalid_ids_are_refused() {
        for bad in [
            r#"{"type":"hello"}"#,
            r#"{"id":-1,"type":"hello"}"#,
            r#"{"id":1.5,"type":"hello"}"#,
            r#"{"id":"","type":"hello"}"#,
            r#"{"id":{},"type":"hello"}"#,
        ] {
            let f = parse_request(bad.as_bytes()).unwrap_err();
            assert_eq!(f.id, None, "{bad}");
        }
    }

    #[test]
    fn replies_have_the_documented_shape() {
        let e = error_reply(
            Some(&Id::Num(9)),
            &BridgeError::new(ErrorCode::ForbiddenApdu, "no"),
        );
        assert_eq!(
            e,
            json!({"id":9,"error":{"code":"forbidden_apdu","message":"no"}})
        );
        assert_eq!(
            error_reply(
                Some(&Id::Num(3)),
                &BridgeError::rate_limited("slow", std::time::Duration::from_millis(1500)),
            ),
            json!({"id":3,"error":{"code":"rate_limited","message":"slow","retry_after_ms":1500}})
        );
        assert_eq!(
            error_reply(None, &BridgeError::bad_request("x"))["id"],
            Value::Null
        );
        assert_eq!(
            reply(&Id::Str("q".into()), json!({"a":1})),
            json!({"id":"q","result":{"a":1}})
        );
        for c in [
            ErrorCode::NoService,
            ErrorCode::NoReader,
            ErrorCode::NoCard,
            ErrorCode::CardRemoved,
            ErrorCode::ForbiddenApdu,
            ErrorCode::RateLimited,
            ErrorCode::ForbiddenOrigin,
            ErrorCode::BadRequest,
            ErrorCode::Timeout,
            ErrorCode::CardError,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
        }
    }
}
