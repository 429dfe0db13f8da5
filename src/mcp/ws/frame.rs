//! Binary WebSocket frames: an 8-byte header, then one JSON-RPC message, compressed.
//! The format is specified in `docs/websocket.md`; this is its one implementation, used
//! by the server, `devmesh edge`, the load tool and the tests.
//!
//! ```text
//! offset  size  field
//! 0       2     magic: 0x44 0x4D ("DM")
//! 2       1     version: 1
//! 3       1     flags: bits 0-1 compression (0 none, 1 zstd, 2 gzip),
//!                      bits 2-3 encoding (0 JSON in UTF-8), bits 4-7 zero
//! 4       4     payload length, unsigned big-endian
//! 8       n     payload: exactly `payload length` bytes
//! ```

use std::cell::RefCell;
use std::io::Read;

pub const MAGIC: [u8; 2] = *b"DM";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 8;

const COMPRESSION_MASK: u8 = 0b0000_0011;
const ENCODING_MASK: u8 = 0b0000_1100;
const RESERVED_MASK: u8 = 0b1111_0000;

/// zstd level for what the server sends: fast, and still a good ratio on JSON.
const ZSTD_LEVEL: i32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
    Gzip,
}

impl Compression {
    fn bits(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Zstd => 1,
            Self::Gzip => 2,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "zstd" => Some(Self::Zstd),
            "gzip" => Some(Self::Gzip),
            _ => None,
        }
    }
}

/// Why a binary frame was refused. Each closes the connection with its code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("binary frame of {0} bytes is shorter than its 8-byte header")]
    ShortHeader(usize),
    #[error("binary frame does not start with the magic bytes \"DM\"")]
    BadMagic,
    #[error("binary frame version {0} is not supported (1 is)")]
    UnsupportedVersion(u8),
    #[error("binary frame flags {0:#04x} use reserved bits or an unknown compression or encoding")]
    UnknownFlags(u8),
    #[error("binary frame says {declared} payload bytes but carries {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("binary frame payload is larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("binary frame payload cannot be decompressed as {0}")]
    Corrupt(&'static str),
}

impl FrameError {
    /// The WebSocket close code: 1009 for sizes, 1007 for undecodable data, 1003 for
    /// what this server does not speak, 1002 for a malformed header.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::TooLarge(_) => 1009,
            Self::Corrupt(_) => 1007,
            Self::UnsupportedVersion(_) | Self::UnknownFlags(_) => 1003,
            Self::ShortHeader(_) | Self::BadMagic | Self::LengthMismatch { .. } => 1002,
        }
    }
}

/// Wraps a JSON message in a binary frame.
pub fn encode(json: &[u8], compression: Compression) -> Vec<u8> {
    let payload = match compression {
        Compression::None => json.to_vec(),
        Compression::Zstd => ZSTD.with(|z| {
            z.borrow_mut()
                .compressor
                .compress(json)
                .expect("zstd compresses into memory")
        }),
        Compression::Gzip => gzip(json),
    };
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&MAGIC);
    frame.push(VERSION);
    frame.push(compression.bits());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame
}

/// Unwraps a binary frame into its JSON message (not yet parsed), and says how it was
/// compressed so that the answer can be too. Neither the payload nor what it
/// decompresses to may exceed `max_bytes`.
pub fn decode(frame: &[u8], max_bytes: usize) -> Result<(Vec<u8>, Compression), FrameError> {
    if frame.len() < HEADER_LEN {
        return Err(FrameError::ShortHeader(frame.len()));
    }
    if frame[0..2] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if frame[2] != VERSION {
        return Err(FrameError::UnsupportedVersion(frame[2]));
    }
    let flags = frame[3];
    let compression = match flags & COMPRESSION_MASK {
        0 => Compression::None,
        1 => Compression::Zstd,
        2 => Compression::Gzip,
        _ => return Err(FrameError::UnknownFlags(flags)),
    };
    if flags & (ENCODING_MASK | RESERVED_MASK) != 0 {
        return Err(FrameError::UnknownFlags(flags));
    }
    let declared = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
    if declared > max_bytes {
        return Err(FrameError::TooLarge(max_bytes));
    }
    let payload = &frame[HEADER_LEN..];
    if payload.len() != declared {
        return Err(FrameError::LengthMismatch {
            declared,
            actual: payload.len(),
        });
    }
    let json = match compression {
        Compression::None => payload.to_vec(),
        Compression::Zstd => unzstd(payload, max_bytes)?,
        Compression::Gzip => gunzip(payload, max_bytes)?,
    };
    Ok((json, compression))
}

/// Per-thread zstd contexts: making one costs more than compressing a small message.
struct ZstdContexts {
    compressor: zstd::bulk::Compressor<'static>,
    decompressor: zstd::bulk::Decompressor<'static>,
}

thread_local! {
    static ZSTD: RefCell<ZstdContexts> = RefCell::new(ZstdContexts {
        compressor: {
            let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("a zstd compressor");
            // A checksum, so that a damaged frame is refused rather than read as garbage.
            c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                .expect("zstd takes a checksum flag");
            c
        },
        decompressor: zstd::bulk::Decompressor::new().expect("a zstd decompressor"),
    });
}

fn unzstd(payload: &[u8], max_bytes: usize) -> Result<Vec<u8>, FrameError> {
    use zstd::zstd_safe;
    let one_frame = zstd_safe::find_frame_compressed_size(payload).ok() == Some(payload.len());
    match zstd_safe::get_frame_content_size(payload) {
        // One frame that says how large it is: refuse early, or decompress in one go
        // into exactly that much memory.
        Ok(Some(size)) if size > max_bytes as u64 => Err(FrameError::TooLarge(max_bytes)),
        Ok(Some(size)) if one_frame => ZSTD
            .with(|z| {
                z.borrow_mut()
                    .decompressor
                    .decompress(payload, size as usize)
            })
            .map_err(|_| FrameError::Corrupt("zstd")),
        // Sizes not recorded, or several frames: stream, and stop at the limit.
        Ok(_) => read_capped(
            zstd::stream::read::Decoder::with_buffer(payload)
                .map_err(|_| FrameError::Corrupt("zstd"))?,
            max_bytes,
            "zstd",
        ),
        Err(_) => Err(FrameError::Corrupt("zstd")),
    }
}

/// Per-thread deflate contexts, for the same reason.
struct DeflateContexts {
    compress: flate2::Compress,
    decompress: flate2::Decompress,
}

thread_local! {
    static DEFLATE: RefCell<DeflateContexts> = RefCell::new(DeflateContexts {
        compress: flate2::Compress::new(flate2::Compression::fast(), false),
        decompress: flate2::Decompress::new(false),
    });
}

/// The gzip header this side writes: deflate, no name or extra fields, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
const FHCRC: u8 = 0b0010;
const FEXTRA: u8 = 0b0100;
const FNAME: u8 = 0b1000;
const FCOMMENT: u8 = 0b1_0000;

/// One gzip member (RFC 1952).
fn gzip(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(GZIP_HEADER.len() + json.len() / 2 + 64);
    out.extend_from_slice(&GZIP_HEADER);
    DEFLATE.with(|d| {
        let c = &mut d.borrow_mut().compress;
        c.reset();
        loop {
            out.reserve(json.len() / 4 + 64);
            let consumed = c.total_in() as usize;
            let status = c
                .compress_vec(&json[consumed..], &mut out, flate2::FlushCompress::Finish)
                .expect("deflate into memory");
            if status == flate2::Status::StreamEnd {
                break;
            }
        }
    });
    let mut crc = flate2::Crc::new();
    crc.update(json);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out
}

/// The content of one gzip member, checked against its CRC and length; no more than
/// `max_bytes` of it.
fn gunzip(member: &[u8], max_bytes: usize) -> Result<Vec<u8>, FrameError> {
    let corrupt = || FrameError::Corrupt("gzip");
    let deflated = gzip_body(member).ok_or_else(corrupt)?;
    let mut out = Vec::with_capacity((deflated.len() * 4).min(max_bytes + 1));
    let used = DEFLATE.with(|d| {
        let d = &mut d.borrow_mut().decompress;
        d.reset(false);
        loop {
            if out.len() > max_bytes {
                return Err(FrameError::TooLarge(max_bytes));
            }
            if out.capacity() == out.len() {
                out.reserve(out.len().clamp(1024, max_bytes + 1 - out.len()));
            }
            let consumed = d.total_in() as usize;
            let before = (d.total_in(), d.total_out());
            let status = d
                .decompress_vec(
                    &deflated[consumed..],
                    &mut out,
                    flate2::FlushDecompress::Finish,
                )
                .map_err(|_| corrupt())?;
            match status {
                flate2::Status::StreamEnd => return Ok(d.total_in() as usize),
                // No progress with room to spare: the data ended early.
                _ if (d.total_in(), d.total_out()) == before && out.capacity() > out.len() => {
                    return Err(corrupt());
                }
                _ => {}
            }
        }
    })?;
    let trailer = &deflated[used..];
    if trailer.len() != 8 {
        return Err(corrupt());
    }
    let mut crc = flate2::Crc::new();
    crc.update(&out);
    let expected_crc = u32::from_le_bytes(trailer[0..4].try_into().expect("4 bytes"));
    let expected_len = u32::from_le_bytes(trailer[4..8].try_into().expect("4 bytes"));
    if crc.sum() != expected_crc || out.len() as u32 != expected_len {
        return Err(corrupt());
    }
    Ok(out)
}

/// What follows a gzip member's header: the deflate data and the 8-byte trailer.
fn gzip_body(member: &[u8]) -> Option<&[u8]> {
    if member.len() < 18 || member[0..3] != [0x1f, 0x8b, 8] {
        return None;
    }
    let flags = member[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let len = u16::from_le_bytes([*member.get(at)?, *member.get(at + 1)?]) as usize;
        at += 2 + len;
    }
    for field in [FNAME, FCOMMENT] {
        if flags & field != 0 {
            at += member.get(at..)?.iter().position(|b| *b == 0)? + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    member.get(at..)
}

fn read_capped(
    reader: impl Read,
    max_bytes: usize,
    format: &'static str,
) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    reader
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| FrameError::Corrupt(format))?;
    if out.len() > max_bytes {
        return Err(FrameError::TooLarge(max_bytes));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;

    #[test]
    fn every_compression_round_trips() {
        for c in [Compression::None, Compression::Zstd, Compression::Gzip] {
            let frame = encode(MESSAGE, c);
            assert_eq!(&frame[0..2], b"DM");
            assert_eq!(frame[2], 1);
            let (json, seen) = decode(&frame, 1024).unwrap();
            assert_eq!(json, MESSAGE, "{c:?}");
            assert_eq!(seen, c);
        }
    }

    #[test]
    fn gzip_from_other_encoders_is_read() {
        use std::io::Write;
        let mut gz = flate2::GzBuilder::new()
            .filename("message.json")
            .comment("from another encoder")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), flate2::Compression::best());
        gz.write_all(MESSAGE).unwrap();
        let payload = gz.finish().unwrap();
        let mut frame = Vec::from(&MAGIC[..]);
        frame.extend([VERSION, 2]);
        frame.extend((payload.len() as u32).to_be_bytes());
        frame.extend(&payload);
        assert_eq!(
            decode(&frame, 1024).unwrap(),
            (MESSAGE.to_vec(), Compression::Gzip)
        );
        // Its checksum is checked: the same data with a wrong CRC is refused.
        let crc_at = frame.len() - 8;
        frame[crc_at] ^= 1;
        assert_eq!(decode(&frame, 1024), Err(FrameError::Corrupt("gzip")));
    }

    #[test]
    fn truncated_frames_are_refused() {
        let frame = encode(MESSAGE, Compression::Zstd);
        assert_eq!(decode(&frame[..5], 1024), Err(FrameError::ShortHeader(5)));
        let cut = &frame[..frame.len() - 3];
        let err = decode(cut, 1024).unwrap_err();
        assert!(matches!(err, FrameError::LengthMismatch { .. }), "{err:?}");
        assert_eq!(err.close_code(), 1002);
        let mut longer = frame.clone();
        longer.push(0);
        assert!(matches!(
            decode(&longer, 1024),
            Err(FrameError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn wrong_header_fields_are_refused() {
        let frame = encode(MESSAGE, Compression::Gzip);
        let mut bad = frame.clone();
        bad[0] = b'X';
        assert_eq!(decode(&bad, 1024), Err(FrameError::BadMagic));
        let mut bad = frame.clone();
        bad[2] = 2;
        assert_eq!(decode(&bad, 1024), Err(FrameError::UnsupportedVersion(2)));
        for flags in [0b11_u8, 0b0100, 0b0001_0010] {
            let mut bad = frame.clone();
            bad[3] = flags;
            let err = decode(&bad, 1024).unwrap_err();
            assert!(matches!(err, FrameError::UnknownFlags(_)), "{flags:#b}");
            assert_eq!(err.close_code(), 1003);
        }
    }

    #[test]
    fn wrongly_flagged_and_corrupt_payloads_are_refused() {
        // gzip data flagged as zstd, and the other way round.
        let mut frame = encode(MESSAGE, Compression::Gzip);
        frame[3] = 1;
        assert_eq!(decode(&frame, 1024), Err(FrameError::Corrupt("zstd")));
        let mut frame = encode(MESSAGE, Compression::Zstd);
        frame[3] = 2;
        assert_eq!(decode(&frame, 1024), Err(FrameError::Corrupt("gzip")));
        // Flipped bytes inside the compressed data.
        for c in [Compression::Zstd, Compression::Gzip] {
            let mut frame = encode(MESSAGE, c);
            let mid = HEADER_LEN + (frame.len() - HEADER_LEN) / 2;
            for b in &mut frame[mid..] {
                *b ^= 0xA5;
            }
            let err = decode(&frame, 1024).unwrap_err();
            assert!(matches!(err, FrameError::Corrupt(_)), "{c:?}: {err:?}");
            assert_eq!(err.close_code(), 1007);
        }
    }

    #[test]
    fn sizes_are_capped_before_and_after_decompression() {
        // A declared length over the limit is refused before anything is read.
        let mut header = Vec::from(&MAGIC[..]);
        header.extend([VERSION, 1]);
        header.extend(u32::MAX.to_be_bytes());
        assert_eq!(decode(&header, 4096), Err(FrameError::TooLarge(4096)));
        // A small payload that decompresses to far more than the limit.
        let bomb = vec![b' '; 10 * 1024 * 1024];
        for c in [Compression::Zstd, Compression::Gzip] {
            let frame = encode(&bomb, c);
            assert!(
                frame.len() < bomb.len() / 50,
                "{c:?} compresses the bomb: {}",
                frame.len()
            );
            let err = decode(&frame, 4096).unwrap_err();
            assert_eq!(err, FrameError::TooLarge(4096), "{c:?}");
            assert_eq!(err.close_code(), 1009);
        }
        // A zstd stream that does not record its size is streamed and stopped too.
        let mut unsized_zstd = Vec::new();
        {
            let mut enc = zstd::stream::write::Encoder::new(&mut unsized_zstd, 1).unwrap();
            enc.include_contentsize(false).unwrap();
            std::io::Write::write_all(&mut enc, &bomb).unwrap();
            enc.finish().unwrap();
        }
        let mut frame = Vec::from(&MAGIC[..]);
        frame.extend([VERSION, 1]);
        frame.extend((unsized_zstd.len() as u32).to_be_bytes());
        frame.extend(&unsized_zstd);
        assert_eq!(decode(&frame, 4096), Err(FrameError::TooLarge(4096)));
    }
}
