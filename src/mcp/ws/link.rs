//! The way to one connection's client: a bounded queue of encoded frames, written out by
//! the connection's loop. A client that stops reading fills it, and is then closed
//! instead of growing the server's memory.

use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::frame::{self, Compression};

/// The kind of frame a message travels in: the kind its request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Text,
    Binary(Compression),
}

impl FrameKind {
    fn to_bits(self) -> u8 {
        match self {
            Self::Text => 0,
            Self::Binary(Compression::None) => 1,
            Self::Binary(Compression::Zstd) => 2,
            Self::Binary(Compression::Gzip) => 3,
        }
    }

    fn from_bits(bits: u8) -> Self {
        match bits {
            1 => Self::Binary(Compression::None),
            2 => Self::Binary(Compression::Zstd),
            3 => Self::Binary(Compression::Gzip),
            _ => Self::Text,
        }
    }

    /// The frame that carries `message` in this kind.
    pub fn encode(self, message: &Value) -> Outgoing {
        let json = serde_json::to_vec(message).expect("messages serialize");
        match self {
            Self::Text => Outgoing::Text(String::from_utf8(json).expect("JSON is UTF-8")),
            Self::Binary(c) => Outgoing::Binary(frame::encode(&json, c)),
        }
    }
}

/// An encoded frame waiting to be written.
#[derive(Debug)]
pub enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
}

pub struct Link {
    tx: mpsc::Sender<Outgoing>,
    /// Cancelled when the queue overflowed: the loop closes the connection (4001).
    overflowed: CancellationToken,
    /// The kind of the client's latest frame: messages that answer no request
    /// (notifications pushed by the server) travel in it.
    latest_kind: AtomicU8,
}

impl Link {
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(capacity);
        let link = Self {
            tx,
            overflowed: CancellationToken::new(),
            latest_kind: AtomicU8::new(FrameKind::Text.to_bits()),
        };
        (link, rx)
    }

    /// Queues a message in `kind`; false when the connection is gone or its client has
    /// fallen so far behind that it is being closed.
    pub fn send(&self, kind: FrameKind, message: &Value) -> bool {
        if self.overflowed.is_cancelled() {
            return false;
        }
        match self.tx.try_send(kind.encode(message)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflowed.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a message that answers no request, in the kind of the client's latest frame.
    pub fn push(&self, message: &Value) -> bool {
        self.send(self.latest_kind(), message)
    }

    pub fn latest_kind(&self) -> FrameKind {
        FrameKind::from_bits(self.latest_kind.load(Ordering::Relaxed))
    }

    pub fn saw(&self, kind: FrameKind) {
        self.latest_kind.store(kind.to_bits(), Ordering::Relaxed);
    }

    pub fn overflowed(&self) -> &CancellationToken {
        &self.overflowed
    }
}
