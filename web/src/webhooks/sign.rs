//! Endpoint secrets (`whsec_<base64>`) and the signature of a delivery, per Standard
//! Webhooks: `v1,<base64(HMAC-SHA256(secret bytes, "{id}.{timestamp}.{body}"))>`,
//! computed by the specification's own crate.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const PREFIX: &str = "whsec_";
/// Secret bytes a generated secret has; Standard Webhooks asks for 24 to 64.
const GENERATED_BYTES: usize = 32;
const MIN_BYTES: usize = 24;
const MAX_BYTES: usize = 64;

/// A checked endpoint secret, in its `whsec_<base64>` form.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(whsec_…)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret: expected whsec_ followed by the base64 of 24 to 64 random bytes{0}")]
    Malformed(String),
    #[error("no randomness for a secret: {0}")]
    Random(String),
}

impl Secret {
    /// A new secret of 32 random bytes.
    pub fn generate() -> Result<Secret, SecretError> {
        let mut bytes = [0u8; GENERATED_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| SecretError::Random(e.to_string()))?;
        Ok(Secret(format!("{PREFIX}{}", STANDARD.encode(bytes))))
    }

    /// Checks a secret given by the firm.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let Some(encoded) = text.strip_prefix(PREFIX) else {
            return Err(SecretError::Malformed(" (it does not start with whsec_)".into()));
        };
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| SecretError::Malformed(format!(" (the part after whsec_ is not base64: {e})")))?;
        if !(MIN_BYTES..=MAX_BYTES).contains(&bytes.len()) {
            return Err(SecretError::Malformed(format!(" (it has {} bytes)", bytes.len())));
        }
        Ok(Secret(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The `webhook-signature` header of `body` sent as message `id` at unix second `timestamp`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, SecretError> {
    let malformed = |e: standardwebhooks::WebhookError| SecretError::Malformed(format!(" ({e})"));
    standardwebhooks::Webhook::new(secret)
        .map_err(malformed)?
        .sign(id, timestamp, body.as_bytes())
        .map_err(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_specifications_example() {
        // The test vector of the Standard Webhooks reference libraries.
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn generated_secrets_parse_and_bad_ones_say_why() {
        let secret = Secret::generate().unwrap();
        assert_eq!(Secret::parse(secret.as_str()).unwrap(), secret);
        assert_ne!(Secret::generate().unwrap(), secret);
        for (bad, why) in [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "does not start"),
            ("whsec_%%%", "not base64"),
            ("whsec_c2hvcnQ=", "5 bytes"),
        ] {
            let e = Secret::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
