//! The checksums a client may send with a body: `Content-MD5`, or
//! `x-ms-content-crc64` (Azure's CRC-64: the NVMe polynomial, reflected, all ones
//! in and out; sent as base64 of its eight little-endian bytes). One or the other:
//! a request with both is refused, as Azure refuses it.

use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;

use keyless_store::ByteStream;

use super::Ctx;
use super::error::StorageError;
use super::names;

/// Slice-by-16 tables: bodies of every Put Block, Append Block and Put Page
/// pass through it, so the byte-at-a-time table would cost more than the disk.
type Table = crc::Table<16>;
static CRC64: crc::Crc<u64, Table> = crc::Crc::<u64, Table>::new(&crc::CRC_64_NVME);

/// Azure's CRC-64 of `bytes`.
pub(crate) fn crc64(bytes: &[u8]) -> u64 {
    CRC64.checksum(bytes)
}

/// What the request says its body hashes to.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    md5: Option<Vec<u8>>,
    crc64: Option<u64>,
    /// `x-ms-structured-body`: the body is framed, around content this long.
    structured: Option<u64>,
}

/// What a body showed as it streamed past: its CRC-64, or what was wrong with
/// its framing.
#[derive(Clone)]
pub(crate) struct Tap(Arc<Mutex<Seen>>);

struct Seen {
    digest: crc::Digest<'static, u64, Table>,
    fault: Option<StorageError>,
}

impl Tap {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Seen {
            digest: CRC64.digest(),
            fault: None,
        })))
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn value(&self) -> u64 {
        self.seen().digest.clone().finalize()
    }

    /// Why a framed body was refused, if it was.
    pub(crate) fn fault(&self) -> Option<StorageError> {
        self.seen().fault.clone()
    }
}

impl Sent {
    pub(crate) fn from(ctx: &Ctx) -> Result<Self, StorageError> {
        let invalid = |what: &str| {
            StorageError::bad(
                "InvalidHeaderValue",
                format!(
                    "The value for one of the HTTP headers is not in the correct format: {what}"
                ),
            )
        };
        let md5 = ctx
            .header(&names::CONTENT_MD5)
            .map(md5_header)
            .transpose()?;
        let crc64 = ctx
            .header(&names::X_MS_CONTENT_CRC64)
            .map(|v| {
                let raw = STANDARD.decode(v).ok();
                raw.and_then(|r| <[u8; 8]>::try_from(r.as_slice()).ok())
                    .map(u64::from_le_bytes)
                    .ok_or_else(|| invalid("x-ms-content-crc64 is not base64 of 8 bytes"))
            })
            .transpose()?;
        let structured = match ctx.header(&names::X_MS_STRUCTURED_BODY) {
            None => None,
            Some(v) if v.eq_ignore_ascii_case(STRUCTURED_CRC64) => Some(
                ctx.header(&names::X_MS_STRUCTURED_CONTENT_LENGTH)
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| {
                        invalid("a structured body needs x-ms-structured-content-length")
                    })?,
            ),
            Some(_) => {
                return Err(invalid(&format!(
                    "x-ms-structured-body must be `{STRUCTURED_CRC64}`"
                )));
            }
        };
        if md5.is_some() && crc64.is_some() {
            return Err(StorageError::bad(
                "BothCrc64AndMd5HeaderPresent",
                "Both x-ms-content-crc64 header and Content-MD5 header are present.",
            ));
        }
        if u8::from(md5.is_some()) + u8::from(crc64.is_some()) + u8::from(structured.is_some()) > 1
        {
            return Err(invalid(
                "send one of Content-MD5, x-ms-content-crc64 or a structured body",
            ));
        }
        // Put Blob checks the body against x-ms-blob-content-md5 when it is sent,
        // before Content-MD5 (the Put Blob contract: the blob's MD5 takes precedence).
        let md5 = match ctx.header("x-ms-blob-content-md5") {
            Some(v) if ctx.op == super::operation::Operation::PutBlob => Some(md5_header(v)?),
            _ => md5,
        };
        Ok(Self {
            md5,
            crc64,
            structured,
        })
    }

    /// Whether the request sent an MD5 of its body.
    pub(crate) fn has_md5(&self) -> bool {
        self.md5.is_some()
    }

    /// The length of the content the body carries, which differs from the body's
    /// own length when it is framed.
    pub(crate) fn content_length(&self, body_length: Option<u64>) -> Option<u64> {
        self.structured.or(body_length)
    }

    /// Taps `body` for its CRC-64 when the request sent one, or unframes it when
    /// it is a structured message (checking each segment as it passes).
    pub(crate) fn tap(&self, body: ByteStream) -> (ByteStream, Option<Tap>) {
        if let Some(len) = self.structured {
            let tap = Tap::new();
            return (unframe_stream(body, len, tap.clone()), Some(tap));
        }
        if self.crc64.is_none() {
            return (body, None);
        }
        Self::crc_tap(body)
    }

    /// [`Self::tap`], and a CRC-64 computed when the request sent no checksum at
    /// all: Put Block, Append Block and Put Page answer with the CRC-64 of what
    /// they stored ([`Self::echo_computed`]).
    pub(crate) fn tap_computing(&self, body: ByteStream) -> (ByteStream, Option<Tap>) {
        if self.structured.is_none() && self.crc64.is_none() && self.md5.is_none() {
            return Self::crc_tap(body);
        }
        self.tap(body)
    }

    fn crc_tap(body: ByteStream) -> (ByteStream, Option<Tap>) {
        let tap = Tap::new();
        let seen = tap.clone();
        let body = body.map(move |chunk| {
            if let Ok(bytes) = &chunk {
                seen.seen().digest.update(bytes);
            }
            chunk
        });
        (Box::pin(body), Some(tap))
    }

    /// The content of a body read whole: unframed when it is a structured message.
    pub(crate) fn content(&self, body: bytes::Bytes) -> Result<bytes::Bytes, StorageError> {
        let Some(len) = self.structured else {
            return Ok(body);
        };
        let mut unframer = Unframer::new(len);
        let mut out = Vec::new();
        unframer.feed(body, &mut out)?;
        unframer.finish()?;
        Ok(match out.len() {
            1 => out.swap_remove(0),
            _ => out.concat().into(),
        })
    }

    /// Checks a body read whole (already unframed), whose MD5 is `md5` when known.
    pub(crate) fn check_whole(&self, bytes: &[u8], md5: Option<&[u8]>) -> Result<(), StorageError> {
        if let Some(sent) = &self.md5 {
            let computed: [u8; 16];
            let md5 = match md5 {
                Some(m) => m,
                None => {
                    computed =
                        md5::Digest::finalize(<md5::Md5 as md5::Digest>::new_with_prefix(bytes))
                            .into();
                    &computed
                }
            };
            check_md5(sent, md5)?;
        }
        if let Some(sent) = self.crc64 {
            check_crc64(sent, crc64(bytes))?;
        }
        Ok(())
    }

    /// Checks a streamed body: its MD5 as the backend computed it, its CRC-64 or
    /// its framing from the tap.
    pub(crate) fn check_streamed(&self, md5: &[u8], tap: Option<&Tap>) -> Result<(), StorageError> {
        if let Some(fault) = tap.and_then(Tap::fault) {
            return Err(fault);
        }
        if let Some(sent) = &self.md5 {
            check_md5(sent, md5)?;
        }
        if let (Some(sent), Some(tap)) = (self.crc64, tap) {
            check_crc64(sent, tap.value())?;
        }
        Ok(())
    }

    /// [`Self::echo`], or, when the request sent no checksum, the CRC-64 that
    /// [`Self::tap_computing`] computed.
    pub(crate) fn echo_computed(&self, headers: &mut HeaderMap, tap: Option<&Tap>) {
        self.echo(headers);
        if self.structured.is_none()
            && self.crc64.is_none()
            && self.md5.is_none()
            && let Some(tap) = tap
            && let Ok(value) = HeaderValue::from_str(&STANDARD.encode(tap.value().to_le_bytes()))
        {
            headers.insert(HeaderName::from_static("x-ms-content-crc64"), value);
        }
    }

    /// Echoes the CRC-64 the request sent (and the server matched), or the
    /// structured body it sent, as Azure does.
    pub(crate) fn echo(&self, headers: &mut HeaderMap) {
        if let Some(crc) = self.crc64
            && let Ok(value) = HeaderValue::from_str(&STANDARD.encode(crc.to_le_bytes()))
        {
            headers.insert(HeaderName::from_static("x-ms-content-crc64"), value);
        }
        if self.structured.is_some() {
            headers.insert(
                "x-ms-structured-body",
                HeaderValue::from_static(STRUCTURED_CRC64),
            );
        }
    }
}

/// Where an [`Unframer`] is in a structured message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    MessageHeader,
    SegmentHeader,
    SegmentData(u64),
    SegmentFooter,
    MessageFooter,
    Done,
}

/// Reads a structured message (see [`encode_structured`]) back into its content,
/// checking its lengths, its segment numbers and every CRC-64.
struct Unframer {
    part: Part,
    /// The bytes of a header or footer gathered so far.
    pending: Vec<u8>,
    content: u64,
    seen: u64,
    segments: u16,
    segment: u16,
    segment_crc: crc::Digest<'static, u64, Table>,
    message_crc: crc::Digest<'static, u64, Table>,
}

fn malformed(why: &str) -> StorageError {
    StorageError::bad(
        "InvalidInput",
        format!("The structured message body is malformed: {why}."),
    )
}

impl Unframer {
    fn new(content: u64) -> Self {
        Self {
            part: Part::MessageHeader,
            pending: Vec::new(),
            content,
            seen: 0,
            segments: 0,
            segment: 0,
            segment_crc: CRC64.digest(),
            message_crc: CRC64.digest(),
        }
    }

    fn need(&self) -> usize {
        match self.part {
            Part::MessageHeader => 13,
            Part::SegmentHeader => 10,
            Part::SegmentFooter | Part::MessageFooter => 8,
            Part::SegmentData(_) | Part::Done => 0,
        }
    }

    /// Takes `chunk`, pushing the content it holds onto `out`.
    fn feed(
        &mut self,
        mut chunk: bytes::Bytes,
        out: &mut Vec<bytes::Bytes>,
    ) -> Result<(), StorageError> {
        while !chunk.is_empty() {
            if let Part::SegmentData(left) = self.part {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
                let piece = chunk.split_to(take);
                self.segment_crc.update(&piece);
                self.message_crc.update(&piece);
                self.seen += piece.len() as u64;
                let left = left - piece.len() as u64;
                self.part = if left == 0 {
                    Part::SegmentFooter
                } else {
                    Part::SegmentData(left)
                };
                out.push(piece);
                continue;
            }
            if self.part == Part::Done {
                return Err(malformed("bytes follow the message's end"));
            }
            let take = (self.need() - self.pending.len()).min(chunk.len());
            self.pending.extend_from_slice(&chunk.split_to(take));
            if self.pending.len() == self.need() {
                let field = std::mem::take(&mut self.pending);
                self.part = self.parse(&field)?;
            }
        }
        Ok(())
    }

    /// Reads a complete header or footer and says what follows it.
    fn parse(&mut self, field: &[u8]) -> Result<Part, StorageError> {
        let u64_at = |at: usize| {
            field
                .get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes)
        };
        let u16_at = |at: usize| {
            field
                .get(at..at + 2)
                .and_then(|b| <[u8; 2]>::try_from(b).ok())
                .map_or(0, u16::from_le_bytes)
        };
        let next_segment = |this: &Self| {
            if this.segment == this.segments {
                Part::MessageFooter
            } else {
                Part::SegmentHeader
            }
        };
        match self.part {
            Part::MessageHeader => {
                if field.first() != Some(&1) {
                    return Err(malformed("its version is not 1"));
                }
                if Some(u64_at(1)) != structured_len_of(self.content, u16_at(11)) {
                    return Err(malformed(
                        "its length does not match x-ms-structured-content-length and its segments",
                    ));
                }
                if u16_at(9) != 1 {
                    return Err(malformed("keyless reads messages with CRC-64s only"));
                }
                self.segments = u16_at(11);
                Ok(next_segment(self))
            }
            Part::SegmentHeader => {
                self.segment += 1;
                if u16_at(0) != self.segment {
                    return Err(malformed("its segments are out of order"));
                }
                let len = u64_at(2);
                if len == 0 || self.seen + len > self.content {
                    return Err(malformed("a segment's length does not fit the content"));
                }
                Ok(Part::SegmentData(len))
            }
            Part::SegmentFooter => {
                let done = std::mem::replace(&mut self.segment_crc, CRC64.digest());
                check_crc64(u64_at(0), done.finalize())?;
                Ok(next_segment(self))
            }
            Part::MessageFooter => {
                if self.seen != self.content {
                    return Err(malformed("its segments hold less than its content length"));
                }
                let done = std::mem::replace(&mut self.message_crc, CRC64.digest());
                check_crc64(u64_at(0), done.finalize())?;
                Ok(Part::Done)
            }
            Part::SegmentData(_) | Part::Done => Ok(self.part),
        }
    }

    fn finish(&self) -> Result<(), StorageError> {
        match self.part {
            Part::Done => Ok(()),
            _ => Err(malformed("it ends before its last CRC-64")),
        }
    }
}

/// Unframes a whole structured message fed in chunks of `chunk` bytes: the fuzz
/// target's way in (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn unframe(body: &[u8], content: u64, chunk: usize) -> Result<Vec<u8>, StorageError> {
    let mut unframer = Unframer::new(content);
    let mut out = Vec::new();
    for piece in body.chunks(chunk.max(1)) {
        unframer.feed(bytes::Bytes::copy_from_slice(piece), &mut out)?;
    }
    unframer.finish()?;
    Ok(out.concat())
}

/// The framed length of `content` bytes in `segments` segments.
fn structured_len_of(content: u64, segments: u16) -> Option<u64> {
    let framing = MESSAGE_HEADER + u64::from(segments) * (SEGMENT_HEADER + CRC_LEN) + CRC_LEN;
    content.checked_add(framing)
}

/// `body`, a structured message, as the content it frames; a fault ends the
/// stream with an error and is kept in `tap` for the answer.
fn unframe_stream(body: ByteStream, len: u64, tap: Tap) -> ByteStream {
    struct State {
        body: ByteStream,
        unframer: Unframer,
        ready: std::collections::VecDeque<bytes::Bytes>,
        tap: Tap,
        ended: bool,
    }
    let state = State {
        body,
        unframer: Unframer::new(len),
        ready: std::collections::VecDeque::new(),
        tap,
        ended: false,
    };
    let fail = |s: &State, e: StorageError| {
        s.tap.seen().fault = Some(e);
        std::io::Error::other("the structured message body was refused")
    };
    Box::pin(futures_util::stream::unfold(
        state,
        move |mut s| async move {
            loop {
                if let Some(piece) = s.ready.pop_front() {
                    return Some((Ok(piece), s));
                }
                if s.ended {
                    return None;
                }
                match s.body.next().await {
                    Some(Ok(chunk)) => {
                        let mut out = Vec::new();
                        if let Err(e) = s.unframer.feed(chunk, &mut out) {
                            s.ended = true;
                            let err = fail(&s, e);
                            return Some((Err(err), s));
                        }
                        s.ready.extend(out);
                    }
                    Some(Err(e)) => {
                        s.ended = true;
                        return Some((Err(e), s));
                    }
                    None => {
                        s.ended = true;
                        if let Err(e) = s.unframer.finish() {
                            let err = fail(&s, e);
                            return Some((Err(err), s));
                        }
                    }
                }
            }
        },
    ))
}

/// An MD5 header's 16 bytes; any other value is `InvalidMd5`, as Azure names it.
pub(crate) fn md5_header(value: &str) -> Result<Vec<u8>, StorageError> {
    STANDARD
        .decode(value)
        .ok()
        .filter(|raw| raw.len() == 16)
        .ok_or_else(|| {
            StorageError::bad(
                "InvalidMd5",
                "The MD5 value specified in the request is invalid. The MD5 value must be 128 bits and Base64-encoded.",
            )
        })
}

fn check_md5(sent: &[u8], computed: &[u8]) -> Result<(), StorageError> {
    if sent == computed {
        return Ok(());
    }
    Err(StorageError::bad(
        "Md5Mismatch",
        "The MD5 value specified in the request did not match with the MD5 value calculated by the server.",
    ))
}

fn check_crc64(sent: u64, computed: u64) -> Result<(), StorageError> {
    if sent == computed {
        return Ok(());
    }
    Err(StorageError::bad(
        "Crc64Mismatch",
        "The CRC64 value specified in the request did not match with the CRC64 value calculated by the server.",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_matches_the_azure_sdk() {
        // Values computed with azure-storage-extensions (the SDK's own CRC-64).
        assert_eq!(crc64(b"123456789"), 0xae8b_1486_0a79_9888);
        assert_eq!(crc64(b"hello world"), 0x8d29_d5c3_f6ea_8ebe);
        assert_eq!(crc64(b""), 0);
    }
}

/// The structured message a client asks for with `x-ms-structured-body`.
pub(crate) const STRUCTURED_CRC64: &str = "XSM/1.0; properties=crc64";

/// Content per segment of a structured message.
const SEGMENT: u64 = 4 * 1024 * 1024;
const MESSAGE_HEADER: u64 = 13;
const SEGMENT_HEADER: u64 = 10;
const CRC_LEN: u64 = 8;

/// The length of `len` bytes of content as a structured message with CRC-64s.
pub(crate) fn structured_len(len: u64) -> Option<u64> {
    structured_len_of(len, u16::try_from(len.div_ceil(SEGMENT)).ok()?)
}

struct Encoder {
    content: ByteStream,
    /// Content not yet framed, from the last chunk read.
    leftover: bytes::Bytes,
    total: u64,
    /// Content framed so far.
    sent: u64,
    /// The segment open now (1-based; 0 before the first), and what it still takes.
    segment: u16,
    segment_left: u64,
    segment_crc: crc::Digest<'static, u64, Table>,
    message_crc: crc::Digest<'static, u64, Table>,
    started: bool,
    finished: bool,
}

impl Encoder {
    /// The next piece of the message, or `None` at its end.
    async fn next(&mut self) -> Option<Result<bytes::Bytes, std::io::Error>> {
        if self.finished {
            return None;
        }
        let mut frame = Vec::new();
        if !self.started {
            self.started = true;
            let len = structured_len(self.total).unwrap_or(0);
            frame.push(1u8);
            frame.extend_from_slice(&len.to_le_bytes());
            frame.extend_from_slice(&1u16.to_le_bytes());
            let segments = u16::try_from(self.total.div_ceil(SEGMENT)).unwrap_or(u16::MAX);
            frame.extend_from_slice(&segments.to_le_bytes());
        }
        if self.segment > 0 && self.segment_left == 0 {
            let done = std::mem::replace(&mut self.segment_crc, CRC64.digest());
            frame.extend_from_slice(&done.finalize().to_le_bytes());
            self.segment_left = u64::MAX;
        }
        if self.sent == self.total {
            let done = std::mem::replace(&mut self.message_crc, CRC64.digest());
            frame.extend_from_slice(&done.finalize().to_le_bytes());
            self.finished = true;
            return Some(Ok(frame.into()));
        }
        if self.segment == 0 || self.segment_left == u64::MAX {
            self.segment = self.segment.saturating_add(1);
            self.segment_left = SEGMENT.min(self.total - self.sent);
            frame.extend_from_slice(&self.segment.to_le_bytes());
            frame.extend_from_slice(&self.segment_left.to_le_bytes());
        }
        if !frame.is_empty() {
            return Some(Ok(frame.into()));
        }
        if self.leftover.is_empty() {
            match self.content.next().await {
                Some(Ok(chunk)) => self.leftover = chunk,
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    self.finished = true;
                    return Some(Err(std::io::Error::other(
                        "the blob ended before its length",
                    )));
                }
            }
        }
        let take = usize::try_from(self.segment_left)
            .unwrap_or(usize::MAX)
            .min(self.leftover.len());
        let piece = self.leftover.split_to(take);
        self.segment_crc.update(&piece);
        self.message_crc.update(&piece);
        self.segment_left -= piece.len() as u64;
        self.sent += piece.len() as u64;
        Some(Ok(piece))
    }
}

/// `content` (`len` bytes) framed as a structured message: a header, segments of
/// at most 4 MiB each followed by its CRC-64, and the CRC-64 of all the content.
pub(crate) fn encode_structured(content: ByteStream, len: u64) -> ByteStream {
    let encoder = Encoder {
        content,
        leftover: bytes::Bytes::new(),
        total: len,
        sent: 0,
        segment: 0,
        segment_left: 0,
        segment_crc: CRC64.digest(),
        message_crc: CRC64.digest(),
        started: false,
        finished: false,
    };
    Box::pin(futures_util::stream::unfold(encoder, |mut e| async move {
        e.next().await.map(|item| (item, e))
    }))
}

#[cfg(test)]
mod structured_tests {
    use super::*;

    async fn encode(content: Vec<bytes::Bytes>) -> Vec<u8> {
        let len = content.iter().map(|c| c.len() as u64).sum();
        let stream: ByteStream = Box::pin(futures_util::stream::iter(content.into_iter().map(Ok)));
        let mut out = Vec::new();
        let mut framed = encode_structured(stream, len);
        while let Some(piece) = framed.next().await {
            out.extend_from_slice(&piece.unwrap());
        }
        assert_eq!(out.len() as u64, structured_len(len).unwrap());
        out
    }

    fn le(n: u64) -> [u8; 8] {
        n.to_le_bytes()
    }

    #[tokio::test]
    async fn a_small_body_is_one_segment_with_its_crcs() {
        let out = encode(vec![
            bytes::Bytes::from_static(b"hello "),
            bytes::Bytes::from_static(b"world"),
        ])
        .await;
        let mut expected = vec![1u8];
        expected.extend_from_slice(&le(13 + 10 + 11 + 8 + 8));
        expected.extend_from_slice(&[1, 0, 1, 0, 1, 0]);
        expected.extend_from_slice(&le(11));
        expected.extend_from_slice(b"hello world");
        expected.extend_from_slice(&le(crc64(b"hello world")));
        expected.extend_from_slice(&le(crc64(b"hello world")));
        assert_eq!(out, expected);
    }

    #[tokio::test]
    async fn segments_split_at_four_mebibytes_and_an_empty_body_has_none() {
        let content: Vec<u8> = (0..SEGMENT + 5).map(|i| (i % 251) as u8).collect();
        let chunks = content
            .chunks(1_000_000)
            .map(bytes::Bytes::copy_from_slice)
            .collect();
        let out = encode(chunks).await;
        assert_eq!(&out[11..13], &[2, 0]);
        let first = 13 + 10;
        let split = usize::try_from(SEGMENT).unwrap();
        assert_eq!(&out[13..15], &[1, 0]);
        assert_eq!(&out[first..first + split], &content[..split]);
        let crc1 = first + split;
        assert_eq!(&out[crc1..crc1 + 8], &le(crc64(&content[..split])));
        assert_eq!(&out[crc1 + 8..crc1 + 10], &[2, 0]);
        assert_eq!(&out[crc1 + 10..crc1 + 18], &le(5));
        assert_eq!(&out[out.len() - 8..], &le(crc64(&content)));

        let empty = encode(Vec::new()).await;
        assert_eq!(empty.len(), 21);
        assert_eq!(&empty[11..13], &[0, 0]);
    }
}

#[cfg(test)]
mod unframe_tests {
    use super::*;

    async fn framed(content: &[u8]) -> Vec<u8> {
        let stream: ByteStream = Box::pin(futures_util::stream::once({
            let c = bytes::Bytes::copy_from_slice(content);
            async move { Ok(c) }
        }));
        let mut out = Vec::new();
        let mut s = encode_structured(stream, content.len() as u64);
        while let Some(piece) = s.next().await {
            out.extend_from_slice(&piece.unwrap());
        }
        out
    }

    /// Unframes `message` fed in pieces of `step` bytes.
    fn unframe(message: &[u8], len: u64, step: usize) -> Result<Vec<u8>, StorageError> {
        let mut unframer = Unframer::new(len);
        let mut out = Vec::new();
        for piece in message.chunks(step) {
            unframer.feed(bytes::Bytes::copy_from_slice(piece), &mut out)?;
        }
        unframer.finish()?;
        Ok(out.concat())
    }

    fn code(r: Result<Vec<u8>, StorageError>) -> String {
        let e = r.unwrap_err();
        let response = axum::response::IntoResponse::into_response(e);
        response.headers()["x-ms-error-code"]
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[tokio::test]
    async fn what_is_framed_unframes_in_any_pieces() {
        let content: Vec<u8> = (0..SEGMENT + 777).map(|i| (i % 253) as u8).collect();
        let message = framed(&content).await;
        let len = content.len() as u64;
        for step in [1 << 20, 4093, usize::MAX] {
            let step = step.min(message.len());
            assert_eq!(unframe(&message, len, step).unwrap(), content);
        }
        let empty = framed(b"").await;
        assert_eq!(unframe(&empty, 0, 5).unwrap(), b"");
    }

    #[tokio::test]
    async fn a_flipped_bit_a_cut_or_a_wrong_length_is_refused() {
        let content = b"the content of a block".to_vec();
        let message = framed(&content).await;
        let len = content.len() as u64;
        let mut flipped = message.clone();
        flipped[30] ^= 1;
        assert_eq!(code(unframe(&flipped, len, 7)), "Crc64Mismatch");
        assert_eq!(
            code(unframe(&message[..message.len() - 3], len, 7)),
            "InvalidInput"
        );
        let mut longer = message.clone();
        longer.push(0);
        assert_eq!(code(unframe(&longer, len, 7)), "InvalidInput");
        assert_eq!(code(unframe(&message, len + 1, 7)), "InvalidInput");
        let mut out_of_order = message.clone();
        out_of_order[13] = 2;
        assert_eq!(code(unframe(&out_of_order, len, 64)), "InvalidInput");
    }
}
