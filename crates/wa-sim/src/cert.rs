//! The simulator's Noise certificate chain, really signed.
//!
//! WhatsApp's server proves its static key with a two-step chain: an intermediate certificate
//! signed (XEdDSA) by WhatsApp's root key, and a leaf naming the server's static key, signed by
//! the intermediate. The simulator does the same with a root key of its own, so any client that
//! lets one pin the root can verify the chain for real; whatsapp-rust pins WhatsApp's root, so
//! tests build it with `danger-skip-cert-chain-verify`, which skips only the signature checks.

use buffa::Message as _;
use wacore_libsignal::protocol::KeyPair;
use waproto::whatsapp::{self as wa, cert_chain::noise_certificate};

/// Validity window of both certificates: 2023-11-14 to 2033-05-18, as fixed numbers so runs
/// are reproducible.
const NOT_BEFORE: u64 = 1_700_000_000;
const NOT_AFTER: u64 = 2_000_000_000;

/// The root and intermediate keys, and the chain for one server static key.
pub struct CertAuthority {
    root: KeyPair,
    intermediate: KeyPair,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("root_public_key", &hex::encode(self.root_public_key()))
            .finish_non_exhaustive()
    }
}

impl CertAuthority {
    pub fn generate() -> CertAuthority {
        let mut rng = rand::rng();
        CertAuthority { root: KeyPair::generate(&mut rng), intermediate: KeyPair::generate(&mut rng) }
    }

    /// The key a client must pin to verify this simulator's chain.
    pub fn root_public_key(&self) -> [u8; 32] {
        self.root.public_key.public_key_bytes().try_into().expect("an X25519 public key is 32 bytes")
    }

    /// The encoded `CertChain` proving `server_static`.
    pub fn chain_for(&self, server_static: &[u8; 32]) -> Vec<u8> {
        let mut rng = rand::rng();
        let intermediate_details = noise_certificate::Details {
            serial: Some(1),
            issuer_serial: Some(0),
            key: Some(self.intermediate.public_key.public_key_bytes().to_vec()),
            not_before: Some(NOT_BEFORE),
            not_after: Some(NOT_AFTER),
        }
        .encode_to_vec();
        let leaf_details = noise_certificate::Details {
            serial: Some(2),
            issuer_serial: Some(1),
            key: Some(server_static.to_vec()),
            not_before: Some(NOT_BEFORE),
            not_after: Some(NOT_AFTER),
        }
        .encode_to_vec();
        let sign = |key: &KeyPair, msg: &[u8], rng: &mut rand::rngs::ThreadRng| {
            key.private_key.calculate_signature(msg, rng).expect("XEdDSA signing cannot fail for a valid key").to_vec()
        };
        wa::CertChain {
            intermediate: buffa::MessageField::some(wa::cert_chain::NoiseCertificate {
                signature: Some(sign(&self.root, &intermediate_details, &mut rng)),
                details: Some(intermediate_details),
            }),
            leaf: buffa::MessageField::some(wa::cert_chain::NoiseCertificate {
                signature: Some(sign(&self.intermediate, &leaf_details, &mut rng)),
                details: Some(leaf_details),
            }),
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore_libsignal::protocol::PublicKey;

    /// The chain verifies against the root, as a client pinning it would check.
    #[test]
    fn chain_is_signed_by_the_root() {
        let ca = CertAuthority::generate();
        let server_static = [7u8; 32];
        let chain = wa::CertChain::decode_from_slice(&ca.chain_for(&server_static)).expect("decodes");
        let inter = chain.intermediate.into_option().expect("intermediate");
        let leaf = chain.leaf.into_option().expect("leaf");
        let root = PublicKey::from_djb_public_key_bytes(&ca.root_public_key()).expect("key");
        let (details, sig) = (inter.details.expect("details"), inter.signature.expect("sig"));
        assert!(root.verify_signature(&details, &sig));
        let inter_details = noise_certificate::Details::decode_from_slice(&details).expect("details");
        let inter_key = PublicKey::from_djb_public_key_bytes(&inter_details.key.expect("key")).expect("key");
        let (ldetails, lsig) = (leaf.details.expect("details"), leaf.signature.expect("sig"));
        assert!(inter_key.verify_signature(&ldetails, &lsig));
        let leaf_details = noise_certificate::Details::decode_from_slice(&ldetails).expect("details");
        assert_eq!(leaf_details.key.as_deref(), Some(&server_static[..]));
        // A different root does not verify it.
        let other = CertAuthority::generate();
        let other_root = PublicKey::from_djb_public_key_bytes(&other.root_public_key()).expect("key");
        assert!(!other_root.verify_signature(&details, &sig));
    }
}
