//! Reading and writing `shared::frame` frames on QUIC streams (agent side).

use serde::{Serialize, de::DeserializeOwned};
use warden_shared::frame::{self, FrameError, HEADER_LEN};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The frame itself is bad.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream or connection failed.
    #[error(transparent)]
    Stream(#[from] quinn::ReadError),
}

/// Reads one frame; `Ok(None)` on a clean end of stream at a frame boundary.
///
/// # Errors
/// [`ReadError`] for bad frames, truncation and stream failures.
pub async fn read<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
) -> Result<Option<T>, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    match recv.read_exact(&mut header).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(got)) => {
            return Err(FrameError::Truncated {
                needed: HEADER_LEN,
                got,
            }
            .into());
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    let len = frame::decode_header(header)?;
    let mut payload = vec![0u8; len];
    match recv.read_exact(&mut payload).await {
        Ok(()) => Ok(Some(frame::decode_payload(&payload)?)),
        Err(quinn::ReadExactError::FinishedEarly(got)) => {
            Err(FrameError::Truncated { needed: len, got }.into())
        }
        Err(quinn::ReadExactError::ReadError(e)) => Err(e.into()),
    }
}

/// Writes one frame.
///
/// # Errors
/// Encoding failures or a failed stream.
pub async fn write<T: Serialize>(send: &mut quinn::SendStream, msg: &T) -> anyhow::Result<()> {
    send.write_all(&frame::encode(msg)?).await?;
    Ok(())
}
