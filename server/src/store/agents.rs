//! Join tokens and agent records: token insertion and atomic redemption, agent lookup and
//! read-modify-write updates.

use super::keys::{AGENTS, TOKENS, decode, encode};
use super::{Store, StoreError};
use crate::model::{AgentRecord, TokenRecord, TokenRefusal};
use redb::ReadableTable;

const TOKEN: &str = "token";
const AGENT: &str = "agent";

/// Compares two hashes in time independent of where they differ.
fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Store {
    /// Stores a new join token.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if a token with that id exists; storage failures.
    pub fn insert_token(&self, rec: &TokenRecord) -> Result<(), StoreError> {
        let bytes = encode(TOKEN, rec)?;
        let txn = self.write_txn()?;
        {
            let mut tokens = txn.open_table(TOKENS)?;
            if tokens.get(rec.id.as_str())?.is_some() {
                return Err(StoreError::AlreadyExists {
                    what: TOKEN,
                    id: rec.id.clone(),
                });
            }
            tokens.insert(rec.id.as_str(), bytes.as_slice())?;
        }
        self.commit(txn)?;
        Ok(())
    }

    /// Looks up a join token.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let txn = self.read_txn()?;
        let tokens = txn.open_table(TOKENS)?;
        tokens
            .get(id)?
            .map(|v| decode(TOKEN, id, v.value()))
            .transpose()
    }

    /// Every join token (metadata only; secrets are never stored), in id order.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let txn = self.read_txn()?;
        let tokens = txn.open_table(TOKENS)?;
        tokens
            .iter()?
            .map(|e| {
                let (k, v) = e?;
                decode(TOKEN, k.value(), v.value())
            })
            .collect()
    }

    /// Revokes an unused join token at `now_ms` (revoking twice keeps the first time).
    /// Returns the record (`None`: no such token); a used token is returned unchanged.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn revoke_token(&self, id: &str, now_ms: i64) -> Result<Option<TokenRecord>, StoreError> {
        let txn = self.write_txn()?;
        let rec = {
            let mut tokens = txn.open_table(TOKENS)?;
            let rec: Option<TokenRecord> = tokens
                .get(id)?
                .map(|v| decode(TOKEN, id, v.value()))
                .transpose()?;
            match rec {
                Some(mut t) if t.used_at_ms.is_none() && t.revoked_at_ms.is_none() => {
                    t.revoked_at_ms = Some(now_ms);
                    tokens.insert(id, encode(TOKEN, &t)?.as_slice())?;
                    Some(t)
                }
                other => other,
            }
        };
        self.commit(txn)?;
        Ok(rec)
    }

    /// Redeems a join token in one write transaction: checks it (in this order: unknown id,
    /// forged secret, already used, revoked, expired at `now_ms`), marks it used by the new agent and
    /// inserts `make_agent(&token)`'s record. Nothing is written when the token is refused.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if the new agent's id is taken (nothing is written);
    /// storage failures and [`StoreError::Corrupt`].
    pub fn redeem_token(
        &self,
        id: &str,
        secret_hash: &[u8; 32],
        now_ms: i64,
        make_agent: impl FnOnce(&TokenRecord) -> AgentRecord,
    ) -> Result<Result<AgentRecord, TokenRefusal>, StoreError> {
        let txn = self.write_txn()?;
        let outcome = {
            let mut tokens = txn.open_table(TOKENS)?;
            let token: Option<TokenRecord> = tokens
                .get(id)?
                .map(|v| decode(TOKEN, id, v.value()))
                .transpose()?;
            match token {
                None => Err(TokenRefusal::Unknown),
                Some(t) if !hashes_equal(&t.secret_hash, secret_hash) => Err(TokenRefusal::Forged),
                Some(TokenRecord {
                    used_at_ms: Some(at_ms),
                    ..
                }) => Err(TokenRefusal::AlreadyUsed { at_ms }),
                Some(TokenRecord {
                    revoked_at_ms: Some(at_ms),
                    ..
                }) => Err(TokenRefusal::Revoked { at_ms }),
                Some(t) if now_ms >= t.expires_unix.saturating_mul(1000) => {
                    Err(TokenRefusal::Expired {
                        at_unix: t.expires_unix,
                    })
                }
                Some(mut t) => {
                    let agent = make_agent(&t);
                    let mut agents = txn.open_table(AGENTS)?;
                    if agents.get(agent.id.as_str())?.is_some() {
                        return Err(StoreError::AlreadyExists {
                            what: AGENT,
                            id: agent.id,
                        });
                    }
                    agents.insert(agent.id.as_str(), encode(AGENT, &agent)?.as_slice())?;
                    t.used_at_ms = Some(now_ms);
                    t.used_by = Some(agent.id.clone());
                    tokens.insert(id, encode(TOKEN, &t)?.as_slice())?;
                    Ok(agent)
                }
            }
        };
        if outcome.is_ok() {
            self.commit(txn)?;
        } else {
            txn.abort()?;
        }
        Ok(outcome)
    }

    /// Inserts an agent record directly (imports, tests); enrollment uses
    /// [`Store::redeem_token`].
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if the id is taken; storage failures.
    pub fn insert_agent(&self, rec: &AgentRecord) -> Result<(), StoreError> {
        let bytes = encode(AGENT, rec)?;
        let txn = self.write_txn()?;
        {
            let mut agents = txn.open_table(AGENTS)?;
            if agents.get(rec.id.as_str())?.is_some() {
                return Err(StoreError::AlreadyExists {
                    what: AGENT,
                    id: rec.id.clone(),
                });
            }
            agents.insert(rec.id.as_str(), bytes.as_slice())?;
        }
        self.commit(txn)?;
        Ok(())
    }

    /// Looks up an agent.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn get_agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let txn = self.read_txn()?;
        let agents = txn.open_table(AGENTS)?;
        agents
            .get(id)?
            .map(|v| decode(AGENT, id, v.value()))
            .transpose()
    }

    /// All agents, sorted by id.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let txn = self.read_txn()?;
        let agents = txn.open_table(AGENTS)?;
        agents
            .iter()?
            .map(|entry| {
                let (k, v) = entry?;
                decode(AGENT, k.value(), v.value())
            })
            .collect()
    }

    /// Applies `f` to an agent's record and stores the result, in one write transaction.
    /// Returns the updated record, or `None` (and writes nothing) if there is no such agent.
    /// The record stays stored under `id` even if `f` changes its `id` field; don't.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn update_agent(
        &self,
        id: &str,
        f: impl FnOnce(&mut AgentRecord),
    ) -> Result<Option<AgentRecord>, StoreError> {
        let txn = self.write_txn()?;
        let updated = {
            let mut agents = txn.open_table(AGENTS)?;
            let current: Option<AgentRecord> = agents
                .get(id)?
                .map(|v| decode(AGENT, id, v.value()))
                .transpose()?;
            match current {
                None => None,
                Some(mut rec) => {
                    f(&mut rec);
                    debug_assert_eq!(rec.id, id, "update_agent must not change the id");
                    agents.insert(id, encode(AGENT, &rec)?.as_slice())?;
                    Some(rec)
                }
            }
        };
        if updated.is_some() {
            self.commit(txn)?;
        } else {
            txn.abort()?;
        }
        Ok(updated)
    }

    /// [`Store::update_agent`] for many agents in one write transaction, in order (one
    /// commit for thousands of agents reconnecting at once). Returns, for each update,
    /// whether its agent exists; nothing is written for those that do not.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`]; then nothing is written.
    #[allow(clippy::type_complexity)]
    pub fn update_agents(
        &self,
        updates: Vec<(String, Box<dyn FnOnce(&mut AgentRecord) + Send>)>,
    ) -> Result<Vec<bool>, StoreError> {
        let txn = self.write_txn()?;
        let mut found = Vec::with_capacity(updates.len());
        {
            let mut agents = txn.open_table(AGENTS)?;
            for (id, f) in updates {
                let current: Option<AgentRecord> = agents
                    .get(id.as_str())?
                    .map(|v| decode(AGENT, &id, v.value()))
                    .transpose()?;
                found.push(current.is_some());
                if let Some(mut rec) = current {
                    f(&mut rec);
                    debug_assert_eq!(rec.id, id, "an agent update must not change the id");
                    agents.insert(id.as_str(), encode(AGENT, &rec)?.as_slice())?;
                }
            }
        }
        if found.contains(&true) {
            self.commit(txn)?;
        } else {
            txn.abort()?;
        }
        Ok(found)
    }
}
