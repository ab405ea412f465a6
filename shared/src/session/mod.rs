//! Sans-IO protocol sessions: the agent's side ([`agent::AgentSession`]) and the server's side
//! ([`server::ServerSession`]) of one `warden/1` session as pure state machines.
//!
//! A driver (the quinn loop in `warden-agent` or `warden`) feeds each machine what happened:
//! a decoded message or a frame error, a timer that fired, a batch it read from the spool, a
//! commit that finished. The machine answers with [`agent::Effect`]s / [`server::Effect`]s the
//! driver performs in order (send a message, commit a batch, ack the spool, close with a code)
//! and says, through `poll_timeout`, when it next wants to be woken.
//!
//! Invariants:
//! - time is a parameter: every `now` and deadline is Unix milliseconds given by the driver;
//!   nothing here reads a clock, does IO or spawns tasks;
//! - every close code of a session comes from a machine ([`Close`]);
//! - the messages a machine emits are exactly the wire messages of `docs/specs/protocol.md`;
//!   neither side emits a variant the negotiated version lacks.

pub mod agent;
pub mod server;

#[cfg(test)]
mod tests;

use crate::close;
use crate::frame::FrameError;

/// How long each side waits for the other's opening message (hello, welcome), in ms.
pub const HANDSHAKE_TIMEOUT_MS: i64 = 10_000;

/// Why a machine ends its session: the application close code and the reason sent with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// One of [`crate::close`].
    pub code: u32,
    /// Human-readable reason, sent as the close reason.
    pub reason: String,
}

impl Close {
    /// A close with `code` and `reason`.
    pub fn new(code: u32, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// The close a receiver owes its peer for a frame it could not read:
    /// `FRAME_TOO_LARGE` for the size, `PROTOCOL_ERROR` for everything else.
    pub fn for_frame(err: &FrameError) -> Self {
        let code = match err {
            FrameError::TooLarge(_) => close::FRAME_TOO_LARGE,
            _ => close::PROTOCOL_ERROR,
        };
        Self::new(code, err.to_string())
    }

    fn protocol(reason: impl Into<String>) -> Self {
        Self::new(close::PROTOCOL_ERROR, reason)
    }
}
