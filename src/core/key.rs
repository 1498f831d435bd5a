//! WireGuard public keys as plain values: ordered, copyable, printed in base64.

use std::fmt;

/// A peer's (or interface's) Curve25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Parses the 44-character base64 form used by `wg` and uci.
    pub fn from_base64(s: &str) -> Option<Self> {
        let bytes = base64::decode(s.trim()).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    pub fn to_base64(&self) -> String {
        base64::encode(self.0)
    }

    /// First 8 base64 characters: enough to tell peers apart in logs.
    pub fn short(&self) -> String {
        self.to_base64()[..8].to_string()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_rejects() {
        let k = PublicKey([7; 32]);
        assert_eq!(PublicKey::from_base64(&k.to_base64()), Some(k));
        assert_eq!(PublicKey::from_base64("not base64!"), None);
        // 31 bytes: valid base64, wrong length.
        assert_eq!(PublicKey::from_base64(&base64::encode([1u8; 31])), None);
    }
}
