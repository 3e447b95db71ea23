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

static CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_NVME);

/// Azure's CRC-64 of `bytes`.
pub(crate) fn crc64(bytes: &[u8]) -> u64 {
    CRC64.checksum(bytes)
}

/// What the request says its body hashes to.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    md5: Option<Vec<u8>>,
    crc64: Option<u64>,
}

/// The CRC-64 of a body as it streams past.
pub(crate) struct Tap(Arc<Mutex<crc::Digest<'static, u64>>>);

impl Tap {
    fn value(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .finalize()
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
            .header("content-md5")
            .map(|v| {
                STANDARD
                    .decode(v)
                    .map_err(|_| invalid("Content-MD5 is not base64"))
            })
            .transpose()?;
        let crc64 = ctx
            .header("x-ms-content-crc64")
            .map(|v| {
                let raw = STANDARD.decode(v).ok();
                raw.and_then(|r| <[u8; 8]>::try_from(r.as_slice()).ok())
                    .map(u64::from_le_bytes)
                    .ok_or_else(|| invalid("x-ms-content-crc64 is not base64 of 8 bytes"))
            })
            .transpose()?;
        if ctx.header("x-ms-structured-body").is_some() {
            // Stored as sent, a framed body would become the blob's content.
            return Err(StorageError::bad(
                "UnsupportedHeader",
                "keyless does not decode structured-message request bodies (x-ms-structured-body); send the body as is, with x-ms-content-crc64",
            ));
        }
        if md5.is_some() && crc64.is_some() {
            return Err(invalid("send Content-MD5 or x-ms-content-crc64, not both"));
        }
        Ok(Self { md5, crc64 })
    }

    /// Taps `body` for its CRC-64 when the request sent one.
    pub(crate) fn tap(&self, body: ByteStream) -> (ByteStream, Option<Tap>) {
        if self.crc64.is_none() {
            return (body, None);
        }
        let digest = Arc::new(Mutex::new(CRC64.digest()));
        let tap = Tap(Arc::clone(&digest));
        let body = body.map(move |chunk| {
            if let Ok(bytes) = &chunk {
                digest
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .update(bytes);
            }
            chunk
        });
        (Box::pin(body), Some(tap))
    }

    /// Checks a body read whole, whose MD5 is `md5` when already known.
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

    /// Checks a streamed body: its MD5 as the backend computed it, its CRC-64 from the tap.
    pub(crate) fn check_streamed(&self, md5: &[u8], tap: Option<&Tap>) -> Result<(), StorageError> {
        if let Some(sent) = &self.md5 {
            check_md5(sent, md5)?;
        }
        if let (Some(sent), Some(tap)) = (self.crc64, tap) {
            check_crc64(sent, tap.value())?;
        }
        Ok(())
    }

    /// Echoes the CRC-64 the request sent (and the server matched), as Azure does.
    pub(crate) fn echo(&self, headers: &mut HeaderMap) {
        if let Some(crc) = self.crc64
            && let Ok(value) = HeaderValue::from_str(&STANDARD.encode(crc.to_le_bytes()))
        {
            headers.insert(HeaderName::from_static("x-ms-content-crc64"), value);
        }
    }
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
    let segments = len.div_ceil(SEGMENT);
    u16::try_from(segments).ok()?;
    Some(MESSAGE_HEADER + segments * (SEGMENT_HEADER + CRC_LEN) + len + CRC_LEN)
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
    segment_crc: crc::Digest<'static, u64>,
    message_crc: crc::Digest<'static, u64>,
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
