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
        Compression::Gzip => {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(json).expect("gzip writes into memory");
            gz.finish().expect("gzip writes into memory")
        }
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
        Compression::Gzip => read_capped(flate2::read::GzDecoder::new(payload), max_bytes, "gzip")?,
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
            assert!(frame.len() < 64 * 1024, "{c:?} compresses the bomb");
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
