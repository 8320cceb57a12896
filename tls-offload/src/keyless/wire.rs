//! The keyless wire protocol (version 1): what a TLS process and a key server exchange.
//!
//! A connection carries frames in both directions. Every frame starts with its length: a
//! big-endian `u32` counting the bytes that follow it (at most [`MAX_FRAME`]). All integers are
//! big-endian. A client may send several requests before reading their replies; the server
//! may answer them in any order, so replies are matched to requests by `id`.
//!
//! Request (client to key server):
//!
//! ```text
//!  offset  size  field
//!  0       4     length of the rest (u32) = 48 + M
//!  4       1     version = 1
//!  5       1     opcode: 1 SIGN, 2 STATS
//!  6       8     request id (u64), chosen by the client, echoed in the reply
//!  14      2     signature scheme (u16): the TLS SignatureScheme code point, e.g.
//!                0x0403 ecdsa_secp256r1_sha256, 0x0804 rsa_pss_rsae_sha256,
//!                0x0401 rsa_pkcs1_sha256, 0x0807 ed25519 (STATS: 0)
//!  16      32    key id: SHA-256 of the certificate's SubjectPublicKeyInfo (DER), so one key
//!                server can hold several keys (STATS: zeros)
//!  48      4     message length M (u32)
//!  52      M     the message to sign, unhashed: the key server hashes and pads it as the
//!                scheme says (STATS: M = 0)
//! ```
//!
//! Reply (key server to client):
//!
//! ```text
//!  offset  size  field
//!  0       4     length of the rest (u32) = 14 + P
//!  4       1     version = 1
//!  5       1     status: 0 OK, 1 unknown key, 2 unsupported scheme for that key,
//!                3 bad request, 4 signing failed
//!  6       8     request id (u64) of the request answered
//!  14      4     payload length P (u32)
//!  18      P     OK: the signature (SIGN) or `name=value` lines (STATS);
//!                otherwise: UTF-8 error text for the log
//! ```
//!
//! A frame that does not parse (wrong version, lengths that disagree, over [`MAX_FRAME`]) is
//! answered with status 3 when its id can be read, and the key server closes the connection
//! after a length over the limit (the stream cannot be resynchronised).

use std::io::{self, Read};

/// Protocol version carried by every frame.
pub const VERSION: u8 = 1;
/// Largest frame body accepted (the bytes after the length prefix), both directions.
pub const MAX_FRAME: usize = 64 * 1024;
/// Opcode: sign `message` with the key `key_id` under `scheme`.
pub const OP_SIGN: u8 = 1;
/// Opcode: report the key server's counters (`requests`, `signed`, `failed` lines).
pub const OP_STATS: u8 = 2;
/// Size of a request without its message (after the length prefix).
pub const REQUEST_HEADER: usize = 48;
/// Size of a reply without its payload (after the length prefix).
pub const REPLY_HEADER: usize = 14;

/// Reply status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Signed (or stats given); the payload is the signature.
    Ok,
    /// No key with that key id.
    UnknownKey,
    /// The key cannot sign with that scheme.
    BadScheme,
    /// The request did not parse.
    BadRequest,
    /// The key failed to sign (or a failure was injected for tests).
    SignFailed,
}

impl Status {
    /// The status byte.
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::UnknownKey => 1,
            Status::BadScheme => 2,
            Status::BadRequest => 3,
            Status::SignFailed => 4,
        }
    }

    /// The status of a byte, `None` for an unknown one.
    pub fn from_code(code: u8) -> Option<Status> {
        Some(match code {
            0 => Status::Ok,
            1 => Status::UnknownKey,
            2 => Status::BadScheme,
            3 => Status::BadRequest,
            4 => Status::SignFailed,
            _ => return None,
        })
    }
}

/// A request frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// [`OP_SIGN`] or [`OP_STATS`].
    pub opcode: u8,
    /// Echoed in the reply.
    pub id: u64,
    /// TLS SignatureScheme code point.
    pub scheme: u16,
    /// SHA-256 of the certificate's SubjectPublicKeyInfo.
    pub key_id: [u8; 32],
    /// The message to sign, unhashed.
    pub message: Vec<u8>,
}

/// A reply frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The id of the request answered.
    pub id: u64,
    /// What happened.
    pub status: Status,
    /// The signature, or error text.
    pub payload: Vec<u8>,
}

/// Why a frame body did not parse. `id` is the request id when it could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    /// The id of the frame, when it was readable.
    pub id: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WireError {}

fn be_u16(b: &[u8], at: usize) -> u16 {
    let mut x = [0u8; 2];
    x.copy_from_slice(&b[at..at + 2]);
    u16::from_be_bytes(x)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(x)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

fn frame(body_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body_len);
    // bodies built here are bounded by MAX_FRAME plus a header (callers check)
    out.extend_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_be_bytes());
    out
}

impl Request {
    /// The whole frame, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = frame(REQUEST_HEADER + self.message.len());
        out.push(VERSION);
        out.push(self.opcode);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.scheme.to_be_bytes());
        out.extend_from_slice(&self.key_id);
        let len = u32::try_from(self.message.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.message);
        out
    }

    /// Parses a frame body (the bytes after the length prefix).
    pub fn decode(body: &[u8]) -> Result<Request, WireError> {
        let id = (body.len() >= 10).then(|| be_u64(body, 2));
        let bad = |message: String| WireError { id, message };
        if body.len() < REQUEST_HEADER {
            return Err(bad(format!(
                "request of {} bytes is shorter than its {REQUEST_HEADER}-byte header",
                body.len()
            )));
        }
        if body[0] != VERSION {
            return Err(bad(format!("unsupported protocol version {}", body[0])));
        }
        let mlen = be_u32(body, 44) as usize;
        if body.len() - REQUEST_HEADER != mlen {
            return Err(bad(format!(
                "message length {mlen} disagrees with the frame ({} bytes after the header)",
                body.len() - REQUEST_HEADER
            )));
        }
        let mut key_id = [0u8; 32];
        key_id.copy_from_slice(&body[12..44]);
        Ok(Request {
            opcode: body[1],
            id: be_u64(body, 2),
            scheme: be_u16(body, 10),
            key_id,
            message: body[REQUEST_HEADER..].to_vec(),
        })
    }
}

impl Reply {
    /// The whole frame, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = frame(REPLY_HEADER + self.payload.len());
        out.push(VERSION);
        out.push(self.status.code());
        out.extend_from_slice(&self.id.to_be_bytes());
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Parses a frame body (the bytes after the length prefix).
    pub fn decode(body: &[u8]) -> Result<Reply, WireError> {
        let id = (body.len() >= 10).then(|| be_u64(body, 2));
        let bad = |message: String| WireError { id, message };
        if body.len() < REPLY_HEADER {
            return Err(bad(format!(
                "reply of {} bytes is shorter than its {REPLY_HEADER}-byte header",
                body.len()
            )));
        }
        if body[0] != VERSION {
            return Err(bad(format!("unsupported protocol version {}", body[0])));
        }
        let status = Status::from_code(body[1])
            .ok_or_else(|| bad(format!("unknown reply status {}", body[1])))?;
        let plen = be_u32(body, 10) as usize;
        if body.len() - REPLY_HEADER != plen {
            return Err(bad(format!(
                "payload length {plen} disagrees with the frame ({} bytes after the header)",
                body.len() - REPLY_HEADER
            )));
        }
        Ok(Reply {
            id: be_u64(body, 2),
            status,
            payload: body[REPLY_HEADER..].to_vec(),
        })
    }

    /// The payload as text (error replies).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// The body length announced by a length prefix, checked against [`MAX_FRAME`].
pub fn body_len(prefix: [u8; 4]) -> io::Result<usize> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    Ok(len)
}

/// Reads one frame body from a blocking reader (the length prefix is consumed).
pub fn read_frame<R: Read + ?Sized>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix)?;
    let mut body = vec![0u8; body_len(prefix)?];
    r.read_exact(&mut body)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_round_trip_and_bad_frames_are_errors() {
        let req = Request {
            opcode: OP_SIGN,
            id: 0x0102_0304_0506_0708,
            scheme: 0x0403,
            key_id: [7; 32],
            message: b"hello".to_vec(),
        };
        let frame = req.encode();
        assert_eq!(&frame[..4], &(48u32 + 5).to_be_bytes());
        assert_eq!(frame[4], VERSION);
        assert_eq!(&frame[6..14], &req.id.to_be_bytes());
        assert_eq!(&frame[14..16], &[0x04, 0x03]);
        assert_eq!(Request::decode(&frame[4..]).unwrap(), req);
        let reply = Reply {
            id: 9,
            status: Status::SignFailed,
            payload: b"no".to_vec(),
        };
        assert_eq!(Reply::decode(&reply.encode()[4..]).unwrap(), reply);
        // truncated, wrong version, lengths disagreeing: errors, never panics
        for cut in 0..frame.len() - 4 {
            let _ = Request::decode(&frame[4..4 + cut]);
        }
        let mut wrong = frame[4..].to_vec();
        wrong[0] = 2;
        assert!(Request::decode(&wrong)
            .unwrap_err()
            .message
            .contains("version"));
        let mut long = frame[4..].to_vec();
        long.push(0);
        assert_eq!(Request::decode(&long).unwrap_err().id, Some(req.id));
        assert!(body_len((MAX_FRAME as u32 + 1).to_be_bytes()).is_err());
        assert!(Reply::decode(&[1, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]).is_err());
    }
}
