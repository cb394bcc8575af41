//! The `encrypt` namespace: the server as the directory of every device's Signal keys.
//!
//! Devices upload their identity, signed pre-key and one-time pre-keys; anyone about to
//! encrypt to a device fetches a bundle (one one-time key is handed out and consumed); a
//! device can ask for a digest to check the server holds what it uploaded.

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Node, NodeContent};
use wacore_libsignal::protocol::KeyPair;

/// A device's published keys, as the server stores them.
#[derive(Clone, Debug, Default)]
pub(crate) struct PublishedKeys {
    pub registration_id: u32,
    pub identity: Vec<u8>,
    /// (id, public key, signature)
    pub signed_prekey: Option<(u32, Vec<u8>, Vec<u8>)>,
    /// (id, public key), consumed as bundles are handed out.
    pub prekeys: Vec<(u32, Vec<u8>)>,
}

/// The private halves of a phone's pre-keys: what its owner needs to decrypt what it receives.
pub(crate) struct PhoneSecrets {
    pub signed: (u32, KeyPair, Vec<u8>),
    pub prekeys: Vec<(u32, KeyPair)>,
}

/// The phone's own Signal keys (device 0), generated with the account: what it publishes and
/// what it keeps.
pub(crate) fn phone_keys(account: &KeyPair) -> (PublishedKeys, PhoneSecrets) {
    let mut rng = rand::rng();
    let signed = KeyPair::generate(&mut rng);
    // Libsignal signs the serialized (type-prefixed) public key.
    let signature = account
        .private_key
        .calculate_signature(&signed.public_key.serialize(), &mut rng)
        .expect("XEdDSA signing cannot fail for a valid key")
        .to_vec();
    let prekeys: Vec<(u32, KeyPair)> = (1..=50).map(|id| (id, KeyPair::generate(&mut rng))).collect();
    let published = PublishedKeys {
        registration_id: rand::random::<u32>() & 0x3fff,
        identity: account.public_key.public_key_bytes().to_vec(),
        signed_prekey: Some((1, signed.public_key.public_key_bytes().to_vec(), signature.clone())),
        prekeys: prekeys.iter().map(|(id, k)| (*id, k.public_key.public_key_bytes().to_vec())).collect(),
    };
    (published, PhoneSecrets { signed: (1, signed, signature), prekeys })
}

pub(crate) fn be_u32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
}

fn bytes_of<'a>(node: &'a Node, tag: &str) -> Option<&'a [u8]> {
    match &node.get_optional_child(tag)?.content {
        Some(NodeContent::Bytes(b)) => Some(b),
        _ => None,
    }
}

fn id3(id: u32) -> Vec<u8> {
    id.to_be_bytes()[1..].to_vec()
}

fn skey_node(id: u32, public: &[u8], signature: &[u8]) -> Node {
    NodeBuilder::new("skey")
        .children([
            NodeBuilder::new("id").bytes(id3(id)).build(),
            NodeBuilder::new("value").bytes(public.to_vec()).build(),
            NodeBuilder::new("signature").bytes(signature.to_vec()).build(),
        ])
        .build()
}

fn signed_prekey_of(node: &Node) -> Option<(u32, Vec<u8>, Vec<u8>)> {
    let skey = node.get_optional_child("skey")?;
    Some((be_u32(bytes_of(skey, "id")?), bytes_of(skey, "value")?.to_vec(), bytes_of(skey, "signature")?.to_vec()))
}

/// Applies an upload (`<registration/><type/><identity/><list/><skey/>`) or a signed pre-key
/// rotation (`<rotate><skey/></rotate>`).
pub(crate) fn apply_upload(keys: &mut PublishedKeys, node: &Node) {
    if let Some(reg) = bytes_of(node, "registration") {
        keys.registration_id = be_u32(reg);
    }
    if let Some(identity) = bytes_of(node, "identity") {
        keys.identity = identity.to_vec();
    }
    if let Some(skey) = signed_prekey_of(node).or_else(|| node.get_optional_child("rotate").and_then(signed_prekey_of))
    {
        keys.signed_prekey = Some(skey);
    }
    if let Some(list) = node.get_optional_child("list") {
        for key in list.get_children_by_tag("key") {
            if let (Some(id), Some(value)) = (bytes_of(key, "id"), bytes_of(key, "value")) {
                let id = be_u32(id);
                keys.prekeys.retain(|(k, _)| *k != id);
                keys.prekeys.push((id, value.to_vec()));
            }
        }
    }
}

/// `<digest>` of what the server holds, hashed the way the client checks it.
pub(crate) fn digest(keys: &PublishedKeys) -> Option<Node> {
    let (sid, spub, ssig) = keys.signed_prekey.as_ref()?;
    let ids: Vec<u32> = keys.prekeys.iter().map(|(id, _)| *id).collect();
    let pubs: Vec<&[u8]> = keys.prekeys.iter().map(|(_, p)| p.as_slice()).collect();
    let hash = wacore::prekeys::compute_key_bundle_digest(&keys.identity, spub, ssig, &pubs);
    Some(
        NodeBuilder::new("digest")
            .children([
                NodeBuilder::new("registration").bytes(keys.registration_id.to_be_bytes().to_vec()).build(),
                NodeBuilder::new("type").bytes(vec![5]).build(),
                NodeBuilder::new("identity").bytes(keys.identity.clone()).build(),
                skey_node(*sid, spub, ssig),
                NodeBuilder::new("list")
                    .children(ids.iter().map(|id| NodeBuilder::new("id").bytes(id3(*id)).build()))
                    .build(),
                NodeBuilder::new("hash").bytes(hash.to_vec()).build(),
            ])
            .build(),
    )
}

/// One `<user>` of a bundle response; consumes a one-time pre-key.
pub(crate) fn bundle(jid: &str, keys: &mut PublishedKeys, device_identity: Option<&[u8]>) -> Node {
    let Some((sid, spub, ssig)) = keys.signed_prekey.clone() else {
        return NodeBuilder::new("user")
            .attr("jid", jid.to_owned())
            .children([NodeBuilder::new("error").attr("code", "404").attr("text", "item-not-found").build()])
            .build();
    };
    let mut children = vec![
        NodeBuilder::new("registration").bytes(keys.registration_id.to_be_bytes().to_vec()).build(),
        NodeBuilder::new("type").bytes(vec![5]).build(),
        NodeBuilder::new("identity").bytes(keys.identity.clone()).build(),
        skey_node(sid, &spub, &ssig),
    ];
    if !keys.prekeys.is_empty() {
        let (id, public) = keys.prekeys.remove(0);
        children.push(
            NodeBuilder::new("key")
                .children([
                    NodeBuilder::new("id").bytes(id3(id)).build(),
                    NodeBuilder::new("value").bytes(public).build(),
                ])
                .build(),
        );
    }
    if let Some(identity) = device_identity {
        children.push(NodeBuilder::new("device-identity").bytes(identity.to_vec()).build());
    }
    NodeBuilder::new("user").attr("jid", jid.to_owned()).attr("type", "result").children(children).build()
}
