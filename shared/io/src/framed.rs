//! Reading and writing `warden_shared::frame` frames on QUIC streams.

use serde::{Serialize, de::DeserializeOwned};
use warden_shared::frame::{self, FrameError, HEADER_LEN};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The frame itself is bad.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream or connection failed.
    #[error("stream failed: {0}")]
    Stream(#[from] quinn::ReadError),
}

impl ReadError {
    /// The close code that tells the peer why.
    pub fn close_code(&self) -> u32 {
        match self {
            Self::Frame(FrameError::TooLarge(_)) => warden_shared::close::FRAME_TOO_LARGE,
            _ => warden_shared::close::PROTOCOL_ERROR,
        }
    }
}

/// Reads one frame; `Ok(None)` on a clean end of stream at a frame boundary.
/// The header is checked before the payload is read, so oversized frames are never buffered.
///
/// # Errors
/// [`ReadError`] for bad frames, truncation and stream failures.
pub async fn read<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
) -> Result<Option<T>, ReadError> {
    match read_header(recv).await? {
        Some(len) => read_payload(recv, len).await.map(Some),
        None => Ok(None),
    }
}

/// Reads and checks one frame header and returns the length of the payload that follows;
/// `Ok(None)` on a clean end of stream. With [`read_payload`] it lets a reader reserve
/// memory for a payload before taking it off the stream.
///
/// # Errors
/// [`ReadError`] for a bad header, truncation and stream failures.
pub async fn read_header(recv: &mut quinn::RecvStream) -> Result<Option<usize>, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    match recv.read_exact(&mut header).await {
        Ok(()) => Ok(Some(frame::decode_header(header)?)),
        Err(quinn::ReadExactError::FinishedEarly(0)) => Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(got)) => Err(FrameError::Truncated {
            needed: HEADER_LEN,
            got,
        }
        .into()),
        Err(quinn::ReadExactError::ReadError(e)) => Err(e.into()),
    }
}

/// Reads and decodes the `len`-byte payload announced by [`read_header`].
///
/// # Errors
/// [`ReadError`] for a malformed payload, truncation and stream failures.
pub async fn read_payload<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    len: usize,
) -> Result<T, ReadError> {
    let mut payload = vec![0u8; len];
    match recv.read_exact(&mut payload).await {
        Ok(()) => Ok(frame::decode_payload(&payload)?),
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

/// Reads frames on a task of its own (reading is not cancel-safe, so it cannot sit in a
/// `select!`) and forwards them. The channel ends after a clean end of stream or after
/// forwarding the first error. Dropping the receiver stops the task at its next frame.
pub fn spawn_reader<T>(
    mut recv: quinn::RecvStream,
) -> (
    tokio::sync::mpsc::Receiver<Result<T, ReadError>>,
    tokio::task::JoinHandle<()>,
)
where
    T: DeserializeOwned + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            let sent = match read(&mut recv).await {
                Ok(Some(m)) => tx.send(Ok(m)).await.is_ok(),
                Ok(None) => false,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    false
                }
            };
            if !sent {
                break;
            }
        }
    });
    (rx, task)
}
