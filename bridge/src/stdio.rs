//! The browser side of the host: native-messaging frames on stdin/stdout,
//! encoded and decoded by the `native_messaging` crate (a 4-byte length in
//! native byte order, then UTF-8 JSON). On top of the crate: a cap of
//! [`MAX_MESSAGE`] on what the browser sends (the crate allows 64 MB), and an
//! over-size or non-UTF-8 frame is answered instead of ending the host: its
//! payload is skipped, so the stream stays in sync.

use std::io::{self, Read, Write};

use native_messaging::host::{self, NmError};
use serde::Serialize;

/// Largest payload accepted or sent (1 MB, Chrome's cap towards the browser).
pub const MAX_MESSAGE: usize = host::MAX_TO_BROWSER;

/// One frame from the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A UTF-8 payload (not yet checked for JSON).
    Message(String),
    /// A frame that was refused (too large, not UTF-8); why, in plain words.
    Refused(String),
}

/// Read the next frame; `Ok(None)` at a clean end of the stream.
pub fn read_frame<R: Read>(r: &mut R) -> io::Result<Option<Frame>> {
    match host::decode_message_opt(r, MAX_MESSAGE) {
        Ok(m) => Ok(m.map(Frame::Message)),
        Err(NmError::IncomingTooLarge { len, max }) => {
            // the crate read the length only: skip the payload
            let skipped = io::copy(&mut r.take(len as u64), &mut io::sink())?;
            if skipped < len as u64 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a frame",
                ));
            }
            Ok(Some(Frame::Refused(format!(
                "message of {len} bytes exceeds the {max}-byte limit"
            ))))
        }
        Err(NmError::IncomingNotUtf8(_)) => Ok(Some(Frame::Refused("message is not UTF-8".into()))),
        Err(NmError::Io(e)) => Err(e),
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}

/// Write one message. An answer over the cap is replaced by `fallback`.
pub fn write_msg<W: Write, T: Serialize, F: Serialize>(
    out: &mut W,
    msg: &T,
    fallback: impl FnOnce() -> F,
) -> io::Result<()> {
    let frame = match host::encode_message(msg) {
        Ok(f) => f,
        Err(NmError::OutgoingTooLarge { .. }) => {
            host::encode_message(&fallback()).map_err(|e| io::Error::other(e.to_string()))?
        }
        Err(e) => return Err(io::Error::other(e.to_string())),
    };
    host::send_frame(out, &frame).map_err(|e| match e {
        NmError::Io(e) => e,
        e => io::Error::other(e.to_string()),
    })
}

/// The bytes of one frame (for tests and clients of the host).
pub fn encode(payload: &str) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_ne_bytes().to_vec();
    v.extend_from_slice(payload.as_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bytes: &[u8]) -> Vec<io::Result<Option<Frame>>> {
        let mut r = io::Cursor::new(bytes.to_vec());
        let mut out = vec![];
        loop {
            let f = read_frame(&mut r);
            let end = !matches!(f, Ok(Some(_)));
            out.push(f);
            if end {
                return out;
            }
        }
    }

    #[test]
    fn messages_then_clean_eof() {
        let mut b = encode(r#"{"id":1}"#);
        b.extend(encode("[2]"));
        let f = frames(&b);
        assert_eq!(f.len(), 3);
        assert_eq!(
            f[0].as_ref().unwrap(),
            &Some(Frame::Message(r#"{"id":1}"#.into()))
        );
        assert_eq!(f[1].as_ref().unwrap(), &Some(Frame::Message("[2]".into())));
        assert_eq!(f[2].as_ref().unwrap(), &None);
    }

    #[test]
    fn oversize_and_non_utf8_are_refused_and_the_stream_stays_in_sync() {
        let big = MAX_MESSAGE + 10;
        let mut b = (big as u32).to_ne_bytes().to_vec();
        b.extend(vec![b'x'; big]);
        b.extend(3u32.to_ne_bytes());
        b.extend([0xff, 0xfe, 0xfd]);
        b.extend(encode("{}"));
        let f = frames(&b);
        assert!(matches!(&f[0], Ok(Some(Frame::Refused(m))) if m.contains("exceeds")));
        assert!(matches!(&f[1], Ok(Some(Frame::Refused(m))) if m.contains("UTF-8")));
        assert_eq!(f[2].as_ref().unwrap(), &Some(Frame::Message("{}".into())));
    }

    #[test]
    fn truncated_frames_are_errors() {
        let b = encode("[1,2,3]");
        assert!(read_frame(&mut io::Cursor::new(&b[..6])).is_err());
        let mut big = (u32::MAX).to_ne_bytes().to_vec();
        big.extend([b'x'; 10]);
        assert!(read_frame(&mut io::Cursor::new(big)).is_err());
    }

    #[test]
    fn oversize_answers_are_replaced() {
        let mut out = vec![];
        let huge = "x".repeat(MAX_MESSAGE + 1);
        write_msg(&mut out, &huge, || "too large").unwrap();
        assert_eq!(out, encode("\"too large\""));
    }
}
