//! Credentials that never print.

use std::fmt;

use serde::Deserialize;

/// A credential (API secret, signing key). `Debug` prints `Secret([redacted])`
/// and there is no `Display`, so it cannot end up in a log line or an error
/// message by accident. Read it with [`Secret::expose`] only where it is used
/// to sign.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn debug_output_of_a_secret_does_not_contain_it() {
        let secret = Secret::new("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE");
        let shown = format!("{secret:?}");
        assert!(!shown.contains("Gu5t9x"));
        assert_eq!(shown, "Secret([redacted])");
    }
}
