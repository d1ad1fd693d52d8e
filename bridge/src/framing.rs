//! Native-messaging framing: a 4-byte little-endian length, then that many
//! bytes of UTF-8 JSON. Messages are capped at [`MAX_MESSAGE`] bytes in both
//! directions (Chrome caps host → browser at 1 MB; we apply the same cap to
//! what the browser sends us so a hostile peer cannot make us allocate).
//!
//! [`FrameDecoder`] is sans-IO: push bytes in, pull frames out. It copes with
//! partial reads (a frame split over any number of pushes) and resynchronises
//! after an over-size frame by skipping its payload.

use std::io::{self, Read, Write};

/// Largest payload accepted or sent (1 MB).
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// What went wrong with one frame. None of these is fatal for the decoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty message (length 0)")]
    Empty,
    #[error("message of {0} bytes exceeds the 1 MB limit")]
    TooLarge(usize),
}

/// One decoded item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete payload (not yet checked for UTF-8/JSON).
    Message(Vec<u8>),
    /// A frame that was refused; its payload (if any) is skipped.
    Refused(FrameError),
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Header,
    Body(usize),
    Skip(usize),
}

/// Sans-IO decoder of the native-messaging stream.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    state: State,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet consumed (header or partial body).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// True when the decoder is between frames (no partial frame buffered).
    pub fn at_boundary(&self) -> bool {
        self.buf.is_empty() && matches!(self.state, State::Header)
    }

    /// Next complete item, or `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            match self.state {
                State::Header => {
                    if self.buf.len() < 4 {
                        return None;
                    }
                    let len =
                        u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                            as usize;
                    self.buf.drain(..4);
                    if len == 0 {
                        return Some(Frame::Refused(FrameError::Empty));
                    }
                    if len > MAX_MESSAGE {
                        self.state = State::Skip(len);
                        return Some(Frame::Refused(FrameError::TooLarge(len)));
                    }
                    self.state = State::Body(len);
                }
                State::Body(len) => {
                    if self.buf.len() < len {
                        return None;
                    }
                    let msg: Vec<u8> = self.buf.drain(..len).collect();
                    self.state = State::Header;
                    return Some(Frame::Message(msg));
                }
                State::Skip(left) => {
                    let n = left.min(self.buf.len());
                    self.buf.drain(..n);
                    if n == left {
                        self.state = State::Header;
                    } else {
                        self.state = State::Skip(left - n);
                        return None;
                    }
                }
            }
        }
    }
}

/// Encode one payload as a frame. Refuses empty and over-size payloads.
pub fn encode(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    if payload.is_empty() {
        return Err(FrameError::Empty);
    }
    if payload.len() > MAX_MESSAGE {
        return Err(FrameError::TooLarge(payload.len()));
    }
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Write one frame and flush.
pub fn write_frame<W: Write>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    let frame = encode(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    w.write_all(&frame)?;
    w.flush()
}

/// Blocking reader on top of [`FrameDecoder`]: `Ok(None)` at a clean EOF.
pub struct FrameReader<R> {
    inner: R,
    dec: FrameDecoder,
    chunk: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            dec: FrameDecoder::new(),
            chunk: vec![0; 64 * 1024],
        }
    }

    pub fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(f) = self.dec.next_frame() {
                return Ok(Some(f));
            }
            let n = match self.inner.read(&mut self.chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                if self.dec.at_boundary() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a frame",
                ));
            }
            self.dec.push(&self.chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        encode(payload).unwrap()
    }

    #[test]
    fn roundtrip_single() {
        let mut d = FrameDecoder::new();
        d.push(&frame(br#"{"id":1}"#));
        assert_eq!(
            d.next_frame(),
            Some(Frame::Message(br#"{"id":1}"#.to_vec()))
        );
        assert_eq!(d.next_frame(), None);
        assert!(d.at_boundary());
    }

    #[test]
    fn partial_reads_byte_by_byte() {
        let mut bytes = frame(br#"{"id":1,"type":"hello"}"#);
        bytes.extend(frame(br#"{"id":2}"#));
        let mut d = FrameDecoder::new();
        let mut got = vec![];
        for b in &bytes {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                Frame::Message(br#"{"id":1,"type":"hello"}"#.to_vec()),
                Frame::Message(br#"{"id":2}"#.to_vec())
            ]
        );
    }

    #[test]
    fn header_split_and_body_missing() {
        let bytes = frame(b"abcdef");
        let mut d = FrameDecoder::new();
        d.push(&bytes[..3]);
        assert_eq!(d.next_frame(), None);
        d.push(&bytes[3..6]);
        assert_eq!(d.next_frame(), None);
        assert!(!d.at_boundary());
        d.push(&bytes[6..]);
        assert_eq!(d.next_frame(), Some(Frame::Message(b"abcdef".to_vec())));
    }

    #[test]
    fn zero_length_is_refused_and_stream_continues() {
        let mut d = FrameDecoder::new();
        d.push(&0u32.to_le_bytes());
        d.push(&frame(b"{}"));
        assert_eq!(d.next_frame(), Some(Frame::Refused(FrameError::Empty)));
        assert_eq!(d.next_frame(), Some(Frame::Message(b"{}".to_vec())));
    }

    #[test]
    fn oversize_is_refused_and_skipped() {
        let big = MAX_MESSAGE + 10;
        let mut d = FrameDecoder::new();
        d.push(&(big as u32).to_le_bytes());
        assert_eq!(
            d.next_frame(),
            Some(Frame::Refused(FrameError::TooLarge(big)))
        );
        // payload arrives in chunks and is dropped, never buffered whole
        let chunk = vec![b'x'; 100_000];
        let mut left = big;
        while left > 0 {
            let n = left.min(chunk.len());
            d.push(&chunk[..n]);
            left -= n;
            assert_eq!(d.next_frame(), None);
            assert!(d.pending() <= chunk.len());
        }
        d.push(&frame(b"{}"));
        assert_eq!(d.next_frame(), Some(Frame::Message(b"{}".to_vec())));
    }

    #[test]
    fn max_size_is_accepted() {
        let payload = vec![b' '; MAX_MESSAGE];
        let mut d = FrameDecoder::new();
        d.push(&frame(&payload));
        assert_eq!(d.next_frame(), Some(Frame::Message(payload)));
    }

    #[test]
    fn huge_length_header_does_not_allocate() {
        let mut d = FrameDecoder::new();
        d.push(&u32::MAX.to_le_bytes());
        assert_eq!(
            d.next_frame(),
            Some(Frame::Refused(FrameError::TooLarge(u32::MAX as usize)))
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn encode_refuses_empty_and_oversize() {
        assert_eq!(encode(b""), Err(FrameError::Empty));
        assert_eq!(
            encode(&vec![0; MAX_MESSAGE + 1]),
            Err(FrameError::TooLarge(MAX_MESSAGE + 1))
        );
        assert_eq!(&encode(b"ab").unwrap()[..4], &[2, 0, 0, 0]);
    }

    /// A reader that returns at most `n` bytes per call.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn reader_handles_trickle_and_clean_eof() {
        let mut bytes = frame(b"[1]");
        bytes.extend(frame(b"[2]"));
        let mut r = FrameReader::new(Trickle(&bytes, 1));
        assert_eq!(
            r.read_frame().unwrap(),
            Some(Frame::Message(b"[1]".to_vec()))
        );
        assert_eq!(
            r.read_frame().unwrap(),
            Some(Frame::Message(b"[2]".to_vec()))
        );
        assert_eq!(r.read_frame().unwrap(), None);
    }

    #[test]
    fn reader_reports_truncated_frame() {
        let bytes = frame(b"[1,2,3]");
        let mut r = FrameReader::new(Trickle(&bytes[..6], 2));
        let err = r.read_frame().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
