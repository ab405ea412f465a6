//! Validated identifier newtypes: agents, organisations and resources.
//!
//! Canonical resource ids are `<type>:<name>`, e.g. `node:pve1` or `docker:pve1/nginx`.
//! They are what the API, the store and Patrol key on, so they must be stable.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// The identifier is empty or longer than its limit.
    #[error("{kind} must be 1 to {max} bytes long")]
    Length {
        /// Which identifier.
        kind: &'static str,
        /// Its limit.
        max: usize,
    },
    /// The identifier contains a character outside its alphabet.
    #[error("{kind} contains {ch:?}; allowed are {allowed}")]
    Char {
        /// Which identifier.
        kind: &'static str,
        /// The offending character.
        ch: char,
        /// What is allowed, for the message.
        allowed: &'static str,
    },
    /// A resource id lacks the `<type>:` prefix.
    #[error("resource id must look like <type>:<name>, e.g. node:pve1")]
    ResourceShape,
}

fn check(
    kind: &'static str,
    s: &str,
    max: usize,
    ok: fn(char) -> bool,
    allowed: &'static str,
) -> Result<(), IdError> {
    if s.is_empty() || s.len() > max {
        return Err(IdError::Length { kind, max });
    }
    match s.chars().find(|c| !ok(*c)) {
        Some(ch) => Err(IdError::Char { kind, ch, allowed }),
        None => Ok(()),
    }
}

fn slug_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

macro_rules! slug_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `s`.
            ///
            /// # Errors
            /// [`IdError`] if `s` is empty, too long or has characters outside `[A-Za-z0-9._-]`.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check($kind, &s, $max, slug_char, "letters, digits, '-', '_' and '.'")?;
                Ok(Self(s))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slug_id!(
    /// An agent's identity, assigned by the server at enrollment and named in its certificate.
    AgentId, "agent id", 64
);
slug_id!(
    /// An organisation; every stored record carries one.
    OrgId, "organisation id", 64
);

impl OrgId {
    /// The default organisation.
    pub fn default_org() -> Self {
        Self(crate::DEFAULT_ORG.to_owned())
    }
}

/// A canonical resource id, `<type>:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceId(String);

impl ResourceId {
    /// Validates `s` as `<type>:<name>`: a lowercase type (a-z, 0-9, `-`), then a printable name.
    ///
    /// # Errors
    /// [`IdError`] if the shape, length or characters are wrong.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        check(
            "resource id",
            &s,
            512,
            |c| !c.is_control(),
            "printable characters",
        )?;
        let (kind, name) = s.split_once(':').ok_or(IdError::ResourceShape)?;
        if name.is_empty() {
            return Err(IdError::ResourceShape);
        }
        check(
            "resource type",
            kind,
            32,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
            "a-z, 0-9 and '-'",
        )?;
        Ok(Self(s))
    }

    /// Builds `<kind>:<name>`, validating the result.
    ///
    /// # Errors
    /// As [`ResourceId::new`].
    pub fn of(kind: &str, name: &str) -> Result<Self, IdError> {
        Self::new(format!("{kind}:{name}"))
    }

    /// The resource type, the part before the first `:`.
    pub fn kind(&self) -> &str {
        self.0.split_once(':').map_or("", |(k, _)| k)
    }

    /// The name, the part after the first `:`.
    pub fn name(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, n)| n)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ResourceId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl From<ResourceId> for String {
    fn from(id: ResourceId) -> Self {
        id.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids() {
        let id = ResourceId::new("docker:pve1/nginx").unwrap();
        assert_eq!((id.kind(), id.name()), ("docker", "pve1/nginx"));
        assert_eq!(ResourceId::new("nocolon"), Err(IdError::ResourceShape));
        assert_eq!(ResourceId::new("node:"), Err(IdError::ResourceShape));
        assert!(ResourceId::new("Node:x").is_err());
        assert!(ResourceId::new("node:a\nb").is_err());
    }

    #[test]
    fn slug_ids() {
        assert!(AgentId::new("agt-01.a_b").is_ok());
        assert!(AgentId::new("").is_err());
        assert!(AgentId::new("a/b").is_err());
        assert!(OrgId::new("x".repeat(65)).is_err());
    }
}
