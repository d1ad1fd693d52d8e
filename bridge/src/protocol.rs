//! Reading requests and writing replies as JSON. The messages themselves
//! are `purse::bridge_msg` (one declaration for the bridge and the widget);
//! this module adds what only the bridge needs: a parse that keeps the `id`
//! of a request it refuses, so the refusal reaches the right caller.

use purse::bridge_msg::{BridgeError, BridgeResult, Event, Id, Reply, Request};
use serde_json::Value;

pub use purse::bridge_msg::PROTOCOL_VERSION;

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

/// Parse one message payload into a request. Never panics.
pub fn parse_request(payload: &[u8]) -> Result<Request, ParseFailure> {
    let text = std::str::from_utf8(payload).map_err(|_| fail(None, "message is not UTF-8"))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| fail(None, format!("message is not JSON: {e}")))?;
    let Value::Object(obj) = &value else {
        return Err(fail(None, "message must be a JSON object"));
    };
    let id = obj
        .get("id")
        .and_then(|v| serde_json::from_value::<Id>(v.clone()).ok())
        .filter(Id::is_valid)
        .ok_or_else(|| {
            fail(
                None,
                "missing or invalid `id` (a non-negative integer or a string of 1 to 128 characters)",
            )
        })?;
    let req: Request = serde_json::from_value(value).map_err(|e| {
        let mut msg = e.to_string();
        msg.truncate(200);
        fail(Some(id.clone()), msg)
    })?;
    req.check().map_err(|error| ParseFailure {
        id: Some(id),
        error,
    })?;
    Ok(req)
}

/// `{"id": .., "result": ..}`
pub fn reply(id: &Id, result: &BridgeResult) -> Value {
    serde_json::to_value(Reply::result(id.clone(), result)).unwrap_or(Value::Null)
}

/// `{"id": .., "error": {"code": .., "message": ..[, "retry_after_ms": .., "limit": ..]}}`
/// (`id` null when unknown).
pub fn error_reply(id: Option<&Id>, err: &BridgeError) -> Value {
    serde_json::to_value(Reply::<()>::error(id.cloned(), err.clone())).unwrap_or(Value::Null)
}

/// `{"event": name, …}`
pub fn event(ev: &Event) -> Value {
    serde_json::to_value(ev).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use purse::bridge_msg::{BridgeRequest, ErrorCode, Limit};
    use serde_json::json;

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
            (r#"{"id":1}"#, "type"),
            (r#"{"id":1,"type":"nope"}"#, "nope"),
            (r#"{"id":1,"type":"connect"}"#, "reader"),
            (
                r#"{"id":1,"type":"transmit","handle":1,"apdu":"zz"}"#,
                "hex",
            ),
            (
                r#"{"id":1,"type":"transmit","handle":-1,"apdu":"00"}"#,
                "-1",
            ),
            (
                r#"{"id":1,"type":"transmit","handle":4294967296,"apdu":"00"}"#,
                "4294967296",
            ),
            (r#"{"id":1,"type":"disconnect","handle":"1"}"#, "string"),
            (r#"{"id":1,"type":"hello","origin":5}"#, "5"),
        ] {
            let f = parse_request(bad.as_bytes()).unwrap_err();
            assert_eq!(f.id, Some(Id::Num(1)), "{bad}");
            assert_eq!(f.error.code, ErrorCode::BadRequest);
            assert!(f.error.message.contains(msg), "{bad}: {}", f.error.message);
        }
        let long = format!(
            r#"{{"id":"s","type":"hello","origin":"{}"}}"#,
            "o".repeat(600)
        );
        let f = parse_request(long.as_bytes()).unwrap_err();
        assert_eq!(f.id, Some(Id::Str("s".into())));
        assert!(f.error.message.contains("too long"));
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
    fn parses_and_writes_the_wire_shapes() {
        let r = parse_request(br#"{"id":3,"type":"transmit","handle":4,"apdu":"80 5c 00 00 04","origin":"http://127.0.0.1:1"}"#)
            .unwrap();
        assert_eq!(r.origin.as_deref(), Some("http://127.0.0.1:1"));
        assert!(matches!(r.body, BridgeRequest::Transmit { handle: 4, .. }));
        assert_eq!(
            error_reply(
                Some(&Id::Num(3)),
                &BridgeError::rate_limited(Limit::Verify, "slow", 1500),
            ),
            json!({"id":3,"error":{"code":"rate_limited","message":"slow","retry_after_ms":1500,"limit":"verify"}})
        );
        assert_eq!(
            error_reply(None, &BridgeError::bad_request("x"))["id"],
            Value::Null
        );
    }
}
