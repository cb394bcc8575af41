//! The phone's side of linking a companion device.
//!
//! When a phone scans a QR code it learns the companion's identity key and a shared "ADV"
//! secret; it answers (through the server) with a `pair-success` carrying an
//! `ADVSignedDeviceIdentityHMAC`: the device's identity details, signed by the phone's account
//! key over the companion's identity key, and authenticated with the ADV secret. The companion
//! checks both before it considers itself linked. whatsapp-rust has only the companion's half
//! (`PairUtils::do_pair_crypto`); this is the other half.

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use buffa::Message as _;
use hmac::{KeyInit as _, Mac as _};
use wacore_libsignal::protocol::KeyPair;
use waproto::whatsapp as wa;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

const ADV_PREFIX_ACCOUNT_SIGNATURE: &[u8] = &[6, 0];
const ADV_PREFIX_DEVICE_SIGNATURE: &[u8] = &[6, 1];

/// What a phone reads from a companion's QR code.
#[derive(Clone, PartialEq, Eq)]
pub struct ScannedQr {
    pub pairing_ref: String,
    pub noise_public: [u8; 32],
    pub identity_public: [u8; 32],
    pub adv_secret: [u8; 32],
}

impl std::fmt::Debug for ScannedQr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScannedQr").field("pairing_ref", &self.pairing_ref).finish_non_exhaustive()
    }
}

fn key32(b64: &str, what: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = B64.decode(b64).with_context(|| format!("{what} is not base64"))?;
    bytes.try_into().map_err(|_| anyhow!("{what} is not 32 bytes"))
}

/// Parses the QR payload `ref,noise_pub,identity_pub,adv_secret[,platform]` as a phone does.
pub fn parse_qr(qr: &str) -> anyhow::Result<ScannedQr> {
    let body = qr.rsplit_once('#').map_or(qr, |(_, b)| b);
    let parts: Vec<&str> = body.trim().split(',').collect();
    if parts.len() < 4 || parts[..4].iter().any(|p| p.is_empty()) {
        bail!("not a WhatsApp linking QR code: expected ref,noise key,identity key,secret");
    }
    Ok(ScannedQr {
        pairing_ref: parts[0].to_owned(),
        noise_public: key32(parts[1], "the noise key")?,
        identity_public: key32(parts[2], "the identity key")?,
        adv_secret: key32(parts[3], "the ADV secret")?,
    })
}

/// Builds the `device-identity` bytes of `pair-success` for a companion.
pub fn device_identity(
    account: &KeyPair,
    companion_identity: &[u8; 32],
    adv_secret: &[u8; 32],
    key_index: u32,
    timestamp: u64,
) -> Vec<u8> {
    let details = wa::ADVDeviceIdentity {
        raw_id: Some(rand::random::<u32>()),
        timestamp: Some(timestamp),
        key_index: Some(key_index),
        account_type: Some(wa::ADVEncryptionType::E2EE),
        device_type: Some(wa::ADVEncryptionType::E2EE),
    }
    .encode_to_vec();
    let mut to_sign = Vec::with_capacity(2 + details.len() + 32);
    to_sign.extend_from_slice(ADV_PREFIX_ACCOUNT_SIGNATURE);
    to_sign.extend_from_slice(&details);
    to_sign.extend_from_slice(companion_identity);
    let account_signature = account
        .private_key
        .calculate_signature(&to_sign, &mut rand::rng())
        .expect("XEdDSA signing cannot fail for a valid key")
        .to_vec();
    let signed = wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account.public_key.public_key_bytes().to_vec()),
        account_signature: Some(account_signature),
        device_signature: None,
    }
    .encode_to_vec();
    let mut mac = HmacSha256::new_from_slice(adv_secret).expect("HMAC takes any key length");
    mac.update(&signed);
    wa::ADVSignedDeviceIdentityHMAC {
        details: Some(signed),
        hmac: Some(mac.finalize().into_bytes().to_vec()),
        account_type: Some(wa::ADVEncryptionType::E2EE),
    }
    .encode_to_vec()
}

/// Checks the companion's answer (`pair-device-sign`): its device signature over the details,
/// its identity key and the account key, as the phone does before it trusts the new device.
/// Clients may leave the account key out of their answer (Baileys and whatsmeow do: the phone
/// knows its own key); the phone then checks against `account_key`, its own, as WhatsApp does.
pub fn verify_device_signature(
    signed_identity: &[u8],
    companion_identity: &[u8; 32],
    account_key: &[u8],
) -> anyhow::Result<()> {
    let signed = wa::ADVSignedDeviceIdentity::decode_from_slice(signed_identity).context("pair-device-sign")?;
    let details = signed.details.as_deref().ok_or_else(|| anyhow!("no details"))?;
    let account_key = match signed.account_signature_key.as_deref() {
        Some(sent) if sent != account_key => bail!("the companion names another account key"),
        _ => account_key,
    };
    let signature = signed.device_signature.as_deref().ok_or_else(|| anyhow!("no device signature"))?;
    let mut msg = Vec::new();
    for part in [ADV_PREFIX_DEVICE_SIGNATURE, details, companion_identity, account_key] {
        msg.extend_from_slice(part);
    }
    let key = wacore_libsignal::protocol::PublicKey::from_djb_public_key_bytes(companion_identity)?;
    if !key.verify_signature(&msg, signature) {
        bail!("the companion's device signature does not verify");
    }
    Ok(())
}

/// The phone's half of linking by code, after the user typed the code on the phone.
pub(crate) struct PrimaryHello {
    pub ephemeral: KeyPair,
    /// The phone's ephemeral key wrapped with the code, for `primary_hello`.
    pub wrapped: [u8; 80],
    /// The companion's ephemeral key, unwrapped with the code.
    pub companion_ephemeral: [u8; 32],
}

/// Unwraps the companion's ephemeral key with the typed code and wraps our own with it.
pub(crate) fn primary_hello(companion_wrapped: &[u8], code: &str) -> anyhow::Result<PrimaryHello> {
    // Both sides wrap their ephemeral key the same way: salt || iv || AES-CTR(PBKDF2(code)).
    let companion_ephemeral = wacore::pair_code::PairCodeUtils::decrypt_primary_ephemeral_pub(companion_wrapped, code)
        .map_err(|e| anyhow!("cannot unwrap the companion's key: {e}"))?;
    let ephemeral = KeyPair::generate(&mut rand::rng());
    let public: [u8; 32] = ephemeral.public_key.public_key_bytes().try_into().expect("32-byte key");
    let wrapped = wacore::pair_code::PairCodeUtils::encrypt_ephemeral_pub(&public, code);
    Ok(PrimaryHello { ephemeral, wrapped, companion_ephemeral })
}

/// Opens the companion's key bundle and derives the ADV secret both sides now share. Fails
/// when the code the phone typed was not the companion's: the bundle does not decrypt.
pub(crate) fn open_key_bundle(
    hello: &PrimaryHello,
    account: &KeyPair,
    wrapped_bundle: &[u8],
    companion_identity: &[u8; 32],
) -> anyhow::Result<[u8; 32]> {
    use wacore_libsignal::protocol::PublicKey;
    if wrapped_bundle.len() < 32 + 12 + 16 {
        bail!("the key bundle is too short");
    }
    let companion_eph = PublicKey::from_djb_public_key_bytes(&hello.companion_ephemeral)?;
    let ephemeral_shared = hello.ephemeral.private_key.calculate_agreement(&companion_eph)?;
    let (salt, rest) = wrapped_bundle.split_at(32);
    let (iv, sealed) = rest.split_at(12);
    let mut key = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(
        &ephemeral_shared,
        Some(salt),
        b"link_code_pairing_key_bundle_encryption_key",
        &mut key,
    )
    .map_err(|_| anyhow!("key derivation failed"))?;
    let mut bundle = Vec::new();
    let iv: [u8; 12] = iv.try_into().expect("split at 12");
    wacore_libsignal::crypto::aes_256_gcm_decrypt(&key, &iv, b"", sealed, &mut bundle)
        .map_err(|_| anyhow!("the key bundle does not decrypt: the code entered on the phone is not this device's"))?;
    if bundle.len() != 96
        || bundle[..32] != companion_identity[..]
        || bundle[32..64] != *account.public_key.public_key_bytes()
    {
        bail!("the key bundle names other keys than the ones exchanged");
    }
    let companion_id = PublicKey::from_djb_public_key_bytes(companion_identity)?;
    let identity_shared = account.private_key.calculate_agreement(&companion_id)?;
    let mut secret_input = Vec::with_capacity(96);
    secret_input.extend_from_slice(&ephemeral_shared);
    secret_input.extend_from_slice(&identity_shared);
    secret_input.extend_from_slice(&bundle[64..96]);
    let mut adv_secret = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(&secret_input, None, b"adv_secret", &mut adv_secret)
        .map_err(|_| anyhow!("key derivation failed"))?;
    Ok(adv_secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore::pair::{DeviceState, PairUtils};

    /// The companion's own verification (whatsapp-rust's code) accepts what we build, and we
    /// accept what it signs back.
    #[test]
    fn pair_success_round_trips_through_the_companions_crypto() {
        let mut rng = rand::rng();
        let state = DeviceState {
            identity_key: KeyPair::generate(&mut rng),
            noise_key: KeyPair::generate(&mut rng),
            adv_secret_key: rand::random(),
        };
        let qr = PairUtils::make_qr_data(&state, "REF1", wacore::companion_reg::CompanionWebClientType::default());
        let scanned = parse_qr(&qr).expect("our parser reads the client's QR");
        assert_eq!(scanned.pairing_ref, "REF1");
        assert_eq!(scanned.adv_secret, state.adv_secret_key);
        let account = KeyPair::generate(&mut rng);
        let bytes = device_identity(&account, &scanned.identity_public, &scanned.adv_secret, 3, 1_700_000_000);
        let (signed_back, key_index) = PairUtils::do_pair_crypto(&state, &bytes).expect("companion accepts");
        assert_eq!(key_index, 3);
        let account_key = account.public_key.public_key_bytes();
        verify_device_signature(&signed_back, &scanned.identity_public, account_key).expect("phone accepts the answer");
        // Without the account key in the answer (as Baileys and whatsmeow send it), the phone
        // checks against its own; another account's key is refused.
        let mut stripped = wa::ADVSignedDeviceIdentity::decode_from_slice(&signed_back).expect("decode");
        stripped.account_signature_key = None;
        let stripped = stripped.encode_to_vec();
        verify_device_signature(&stripped, &scanned.identity_public, account_key).expect("accepted without the key");
        let other = KeyPair::generate(&mut rng);
        assert!(
            verify_device_signature(&stripped, &scanned.identity_public, other.public_key.public_key_bytes()).is_err()
        );
        assert!(
            verify_device_signature(&signed_back, &scanned.identity_public, other.public_key.public_key_bytes())
                .is_err()
        );
        // A wrong secret is refused by the companion.
        let forged = device_identity(&account, &scanned.identity_public, &[9; 32], 3, 0);
        assert!(PairUtils::do_pair_crypto(&state, &forged).is_err());
    }

    /// The companion's code-linking crypto (whatsapp-rust's) and ours agree on the ADV secret,
    /// and a wrong code is caught.
    #[test]
    fn pair_code_key_agreement_matches_the_companion() {
        use wacore::pair_code::PairCodeUtils;
        let mut rng = rand::rng();
        let code = "ABCD1234";
        let companion_eph = KeyPair::generate(&mut rng);
        let companion_identity = KeyPair::generate(&mut rng);
        let account = KeyPair::generate(&mut rng);
        let eph_pub: [u8; 32] = companion_eph.public_key.public_key_bytes().try_into().expect("32");
        let wrapped = PairCodeUtils::encrypt_ephemeral_pub(&eph_pub, code);
        let hello = primary_hello(&wrapped, code).expect("unwrap");
        assert_eq!(hello.companion_ephemeral, eph_pub);
        let primary_eph =
            PairCodeUtils::decrypt_primary_ephemeral_pub(&hello.wrapped, code).expect("companion unwraps ours");
        let account_pub: [u8; 32] = account.public_key.public_key_bytes().try_into().expect("32");
        let (bundle, companion_secret) =
            PairCodeUtils::prepare_key_bundle(&companion_eph, &primary_eph, &account_pub, &companion_identity)
                .expect("bundle");
        let identity: [u8; 32] = companion_identity.public_key.public_key_bytes().try_into().expect("32");
        let secret = open_key_bundle(&hello, &account, &bundle, &identity).expect("phone opens the bundle");
        assert_eq!(secret, companion_secret);
        // The phone typed another code: nothing decrypts.
        let wrong = primary_hello(&wrapped, "ZZZZ9999").expect("unwrap is unauthenticated");
        assert!(open_key_bundle(&wrong, &account, &bundle, &identity).is_err());
    }

    #[test]
    fn garbage_is_not_a_qr_code() {
        assert!(parse_qr("hello").is_err());
        assert!(parse_qr("a,b,c,d").is_err());
    }
}
