//! Length-prefixed, versioned frames carrying postcard-encoded messages.
//!
//! Layout of one frame:
//!
//! ```text
//! +---------+----------------+--------------------------+
//! | version | length (u32 BE)| postcard payload (length) |
//! +---------+----------------+--------------------------+
//!   1 byte      4 bytes          at most MAX_FRAME_LEN
//! ```
//!
//! The header is checked before any payload byte is read, so an oversized or foreign
//! frame is refused without buffering it.

use serde::{Serialize, de::DeserializeOwned};

/// Frame format version written in the first byte of every frame.
pub const FRAME_VERSION: u8 = 1;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 5;
/// Largest payload a peer may send (4 MiB).
pub const MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The version byte is not [`FRAME_VERSION`].
    #[error("unsupported frame version {0} (expected {FRAME_VERSION})")]
    Version(u8),
    /// The declared or actual payload is larger than [`MAX_FRAME_LEN`].
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN} byte limit")]
    TooLarge(usize),
    /// Fewer bytes than the header declares.
    #[error("truncated frame: needed {needed} bytes, got {got}")]
    Truncated {
        /// Bytes required.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// The payload is not a valid message.
    #[error("malformed payload: {0}")]
    Malformed(String),
}

/// Encodes `msg` as one complete frame (header and payload).
///
/// # Errors
/// [`FrameError::TooLarge`] if the encoded message exceeds [`MAX_FRAME_LEN`];
/// [`FrameError::Malformed`] if serialization fails.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = postcard::to_extend(msg, vec![FRAME_VERSION, 0, 0, 0, 0])
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = out.len() - HEADER_LEN;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    out[1..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Parses a frame header and returns the payload length that follows it.
///
/// # Errors
/// [`FrameError::Version`] or [`FrameError::TooLarge`].
pub fn decode_header(header: [u8; HEADER_LEN]) -> Result<usize, FrameError> {
    if header[0] != FRAME_VERSION {
        return Err(FrameError::Version(header[0]));
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes a frame payload (without header). Trailing bytes are an error.
///
/// # Errors
/// [`FrameError::Malformed`] if the bytes are not exactly one `T`.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (msg, rest) =
        postcard::take_from_bytes(payload).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(msg)
}

/// Decodes one complete frame from `buf`, returning the message and the bytes consumed.
///
/// # Errors
/// Any [`FrameError`]; [`FrameError::Truncated`] if `buf` holds less than one frame.
pub fn decode<T: DeserializeOwned>(buf: &[u8]) -> Result<(T, usize), FrameError> {
    let header: [u8; HEADER_LEN] = buf
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Truncated {
            needed: HEADER_LEN,
            got: buf.len(),
        })?;
    let len = decode_header(header)?;
    let end = HEADER_LEN + len;
    let payload = buf.get(HEADER_LEN..end).ok_or(FrameError::Truncated {
        needed: end,
        got: buf.len(),
    })?;
    Ok((decode_payload(payload)?, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{AgentMessage, Hello, ProtocolVersion};
    use proptest::prelude::*;

    fn hello() -> AgentMessage {
        AgentMessage::Hello(Hello {
            protocol: ProtocolVersion::CURRENT,
            agent_version: "0.1.0".into(),
            hostname: "h1".into(),
            os: "linux".into(),
        })
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&hello()).unwrap();
        let (back, used): (AgentMessage, usize) = decode(&bytes).unwrap();
        assert_eq!(back, hello());
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn refuses_bad_version_oversize_truncation_and_garbage() {
        let mut bytes = encode(&hello()).unwrap();
        bytes[0] = 9;
        assert_eq!(
            decode::<AgentMessage>(&bytes).unwrap_err(),
            FrameError::Version(9)
        );
        let huge = [FRAME_VERSION, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(decode_header(huge), Err(FrameError::TooLarge(_))));
        let bytes = encode(&hello()).unwrap();
        assert!(matches!(
            decode::<AgentMessage>(&bytes[..bytes.len() - 1]),
            Err(FrameError::Truncated { .. })
        ));
        let garbage = [FRAME_VERSION, 0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode::<AgentMessage>(&garbage),
            Err(FrameError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<AgentMessage>(&data);
            let _ = decode::<crate::proto::ServerMessage>(&data);
        }

        #[test]
        fn length_prefix_matches_payload(host in ".{0,64}", seq in any::<u64>()) {
            let msg = AgentMessage::Telemetry(crate::telemetry::TelemetryBatch {
                seq, collector: host.clone(), ..Default::default()
            });
            let bytes = encode(&msg).unwrap();
            let len = decode_header(bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
            prop_assert_eq!(len + HEADER_LEN, bytes.len());
            let (back, _): (AgentMessage, usize) = decode(&bytes).unwrap();
            prop_assert_eq!(back, msg);
        }

        #[test]
        fn provenanced_telemetry_round_trips(
            metric in "[a-z_]{1,24}",
            source in ".{0,16}",
            method in ".{0,96}",
            seq in any::<u64>(),
        ) {
            use crate::telemetry::{Provenance, ProvenancedBatch, TelemetryBatch};
            let msg = AgentMessage::ProvenancedTelemetry(ProvenancedBatch {
                batch: TelemetryBatch { seq, ..Default::default() },
                provenance: vec![Provenance {
                    kind: "node".into(),
                    metric: metric.into(),
                    source: source.into(),
                    method: method.into(),
                }],
            });
            let bytes = encode(&msg).unwrap();
            let (back, used): (AgentMessage, usize) = decode(&bytes).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(back, msg);
        }
    }
}
