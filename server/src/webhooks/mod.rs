//! Audit webhooks: durable, signed, ordered delivery of each org's audit chain (events and
//! checkpoints) to external endpoints (SIEMs). Configuration is in `api/webhooks.rs`,
//! tables in `store/webhooks.rs`, the pure parts (filters, backoff, body, signature) in
//! `plan.rs`, input checks in `validate.rs`, the tasks in `service.rs`; the receiver's side
//! is documented in `docs/webhooks.md`.
//!
//! # Model
//! There is no separate queue: an endpoint's outbox is a cursor over its org's audit chain
//! (`event_seq`, `checkpoint`), so the chain itself is the durable buffer. Messages go out in
//! chain order: event `n`, then the checkpoint at tree size `n` if one exists. Each message
//! that passes the endpoint's action filter gets the next `delivery_seq` (1, 2, 3, ... per
//! endpoint, without gaps); filtered events are passed without using one; checkpoints always
//! pass. Re-queued dead letters go out before the next chain message, with their original
//! delivery seq.
//!
//! # Invariants
//! - **The request path never waits on delivery.** Handlers only record audit events; a
//!   dispatcher learns about them from [`crate::audit::Auditor::subscribe`].
//! - **At least once, in order.** The cursor moves only in the transaction that records a
//!   success or a dead letter, so a crash resends the message whose success was not committed,
//!   with the same delivery seq. A message is never sent before the one before it was
//!   delivered or dead-lettered.
//! - **One dispatcher per enabled endpoint.** The supervisor stops a dispatcher and waits for
//!   it before starting another for the same endpoint, so the outbox state has one writer.
//! - **Secrets stay put.** The endpoint secret is stored sealed with the audit keys
//!   ([`crate::chain::event::Keys::seal_secret`]), opened only to sign, and never logged,
//!   returned by the API after creation, or put into audit details.
//!
//! # Retries
//! Any answer but 2xx, a timeout or a connection error is a failed attempt; the next one
//! waits [`plan::backoff`] (`retry_base * 2^(attempt-1)`, capped at `retry_max`, jittered into
//! its upper half). After `max_attempts` the message becomes a dead letter and the cursor moves
//! on; an operator can re-queue it. The attempt count and retry time are stored, so a restart
//! neither resets nor hurries the schedule.

pub mod plan;
mod service;
pub mod validate;

pub use service::run;

/// The outbound HTTP client of the server's delivery tasks (webhooks, remote write): the
/// request timeout, connects bounded by 10 s, no redirects, a `warden/VERSION` user agent.
///
/// # Errors
/// If reqwest cannot build it (no TLS roots).
pub fn http_client(timeout: std::time::Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(std::time::Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
        .build()
}
