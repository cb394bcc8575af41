//! What the simulated phones write to linked devices: a contact's message, a group message
//! under the sender key, a copy of what the owner typed on the phone, and a message sent
//! again after a retry receipt.
//!
//! Each is end-to-end encrypted with the sending phone's own Signal state (`contacts`) to the
//! keys the devices published, then queued per device in the world until acknowledged. The
//! `Sim` API, the router and linking all send this way, so it sits below them.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use anyhow::{anyhow, bail};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_libsignal::protocol::ProtocolAddress;

use crate::clock::now;
use crate::contacts::{Bundle, ContactCrypto};
use crate::events::SimEvent;
use crate::state::{Addressing, Inner, Plain};

/// A contact's Signal state, made from its account and keys the first time it is needed.
pub(crate) fn crypto_for<'a>(
    inner: &Inner,
    contacts: &'a mut HashMap<String, ContactCrypto>,
    phone: &str,
) -> anyhow::Result<&'a mut ContactCrypto> {
    match contacts.entry(phone.to_owned()) {
        Entry::Occupied(e) => Ok(e.into_mut()),
        Entry::Vacant(v) => {
            let st = inner.state();
            let p = st.phones.get(phone).ok_or_else(|| anyhow!("no account {phone}"))?;
            Ok(v.insert(ContactCrypto::new(&p.account, p.keys.registration_id, &p.secrets)))
        }
    }
}

/// `from`'s phone sends `message` to the linked devices of `to` (all, or just `only`),
/// end-to-end encrypted; queued per device until acknowledged. Returns the message id.
pub(crate) async fn send_message(
    inner: &Inner,
    from: &str,
    to: &str,
    message: &waproto::whatsapp::Message,
    addressing: Addressing,
    only: Option<u16>,
    recipient: Option<&str>,
) -> anyhow::Result<String> {
    let id = format!("3EB0{}", hex::encode_upper(rand::random::<[u8; 8]>()));
    let mut contacts = inner.contacts.lock().await;
    let (lid, devices) = {
        let st = inner.state();
        let sender = st.phones.get(from).ok_or_else(|| anyhow!("no contact {from}; add it first"))?;
        let recipient = st.phones.get(to).ok_or_else(|| anyhow!("no phone {to}"))?;
        let devices: Vec<u16> = recipient.devices.keys().copied().filter(|d| only.is_none_or(|o| o == *d)).collect();
        (sender.lid.clone(), devices)
    };
    if devices.is_empty() {
        bail!("{to} has no linked device to receive it");
    }
    let crypto = crypto_for(inner, &mut contacts, from)?;
    let plain = Plain {
        from: from.to_owned(),
        to: to.to_owned(),
        message: message.clone(),
        addressing,
        recipient: recipient.map(str::to_owned),
    };
    for device in devices {
        let address = device_address(&plain, device);
        let bundle = if crypto.has_session(&address) { None } else { take_bundle(inner, to, device) };
        let (kind, ciphertext) = crate::contacts::encrypt_message(crypto, &address, bundle, message).await?;
        let node = contact_stanza(&plain, &lid, &id, kind, ciphertext);
        inner.state().deliver(to, device, &id, node);
    }
    inner.state().plain.insert(id.clone(), plain);
    inner.events.push(SimEvent::MessageSent { from: from.to_owned(), to: to.to_owned(), id: id.clone() });
    Ok(id)
}

/// `from`'s phone writes `message` to `group`: every other member's linked devices get it
/// under `from`'s sender key, with the key's distribution pairwise encrypted alongside.
/// Returns the message id.
pub(crate) async fn send_group_message(
    inner: &Inner,
    from: &str,
    group: &str,
    message: &waproto::whatsapp::Message,
) -> anyhow::Result<String> {
    let id = format!("3EB0{}", hex::encode_upper(rand::random::<[u8; 8]>()));
    let group_id = group.split('@').next().unwrap_or_default();
    let targets: Vec<(String, u16)> = {
        let st = inner.state();
        let g = st.groups.get(group_id).ok_or_else(|| anyhow!("no group {group}"))?;
        if !g.members.iter().any(|m| m == from) {
            bail!("{from} is not a member of {group}");
        }
        g.members
            .iter()
            .filter(|m| *m != from)
            .flat_map(|m| {
                st.phones.get(m).into_iter().flat_map(move |p| p.devices.keys().map(move |d| (m.clone(), *d)))
            })
            .collect()
    };
    let mut contacts = inner.contacts.lock().await;
    let crypto = crypto_for(inner, &mut contacts, from)?;
    let own = ProtocolAddress::new(from, 0.into());
    let (skdm, skmsg) = crate::contacts::group_encrypt_message(crypto, group, &own, message).await?;
    let distribution = waproto::whatsapp::Message {
        sender_key_distribution_message: buffa::MessageField::some(
            waproto::whatsapp::message::SenderKeyDistributionMessage {
                group_id: Some(group.to_owned()),
                axolotl_sender_key_distribution_message: Some(skdm),
            },
        ),
        ..Default::default()
    };
    for (member, device) in targets {
        let address = ProtocolAddress::new(&member, u32::from(device).into());
        let bundle = if crypto.has_session(&address) { None } else { take_bundle(inner, &member, device) };
        let (kind, ciphertext) = crate::contacts::encrypt_message(crypto, &address, bundle, &distribution).await?;
        let node = NodeBuilder::new("message")
            .attr("id", id.clone())
            .attr("from", group.to_owned())
            .attr("participant", format!("{from}@s.whatsapp.net"))
            .attr("t", now().to_string())
            .attr("type", "text")
            .attr("notify", format!("Contact {from}"))
            .children([
                NodeBuilder::new("enc").attr("v", "2").attr("type", kind).bytes(ciphertext).build(),
                NodeBuilder::new("enc").attr("v", "2").attr("type", "skmsg").bytes(skmsg.clone()).build(),
            ])
            .build();
        inner.state().deliver(&member, device, &id, node);
    }
    inner.events.push(SimEvent::MessageSent { from: from.to_owned(), to: group.to_owned(), id: id.clone() });
    Ok(id)
}

/// A device could not decrypt message `id` and asked for a retry (the `count`th time): the
/// contact's phone sends the message again under the same id, as WhatsApp phones do. The first
/// retry keeps the session (the device usually has it and only lost the race to it, and
/// replies it already encrypted under it stay readable); a later one starts a new session from
/// the device's published keys. Without this, a retry receipt would end the message's life in
/// the simulator while WhatsApp would deliver it.
pub(crate) async fn resend_after_retry(inner: Arc<Inner>, phone: String, device: u16, id: String, count: u32) {
    let Some(plain) = inner.state().plain.get(&id).cloned() else {
        tracing::warn!(id, "a retry receipt for a message the simulator never sent");
        return;
    };
    if plain.to != phone {
        return;
    }
    let Some(lid) = inner.state().phones.get(&plain.from).map(|p| p.lid.clone()) else { return };
    let mut contacts = inner.contacts.lock().await;
    let Ok(crypto) = crypto_for(&inner, &mut contacts, &plain.from) else { return };
    let address = device_address(&plain, device);
    if count >= 2 {
        crypto.forget_session(&address);
    }
    let bundle = if crypto.has_session(&address) { None } else { take_bundle(&inner, &plain.to, device) };
    match crate::contacts::encrypt_message(crypto, &address, bundle, &plain.message).await {
        Ok((kind, ciphertext)) => {
            let node = contact_stanza(&plain, &lid, &id, kind, ciphertext);
            inner.state().deliver(&plain.to, device, &id, node);
        }
        Err(e) => tracing::warn!(id, error = %format!("{e:#}"), "a contact cannot send a message again after a retry"),
    }
}

/// The address a contact's session with `device` goes by: one session per addressing mode, as
/// the recipient keys sessions by the sender's address.
fn device_address(p: &Plain, device: u16) -> ProtocolAddress {
    let name = if p.addressing == Addressing::Phone { p.to.clone() } else { format!("{}.lid", p.to) };
    ProtocolAddress::new(&name, u32::from(device).into())
}

/// The `<message>` stanza that carries a contact's ciphertext to a device.
fn contact_stanza(p: &Plain, lid: &str, id: &str, kind: &'static str, ciphertext: Vec<u8>) -> Node {
    let kind_attr = if p.message.protocol_message.is_set() { "protocol" } else { "text" };
    let mut stanza = NodeBuilder::new("message")
        .attr("id", id.to_owned())
        .attr("t", now().to_string())
        .attr("type", kind_attr)
        .attr("notify", format!("Contact {}", p.from));
    stanza = if p.addressing != Addressing::Phone {
        stanza = stanza.attr("from", format!("{lid}@lid")).attr("addressing_mode", "lid");
        match p.addressing {
            Addressing::LidOnly => stanza,
            _ => stanza.attr("sender_pn", format!("{}@s.whatsapp.net", p.from)),
        }
    } else {
        stanza.attr("from", format!("{}@s.whatsapp.net", p.from))
    };
    if let Some(r) = &p.recipient {
        stanza = stanza.attr("recipient", r.clone());
    }
    stanza.children([NodeBuilder::new("enc").attr("v", "2").attr("type", kind).bytes(ciphertext).build()]).build()
}

/// A pre-key bundle of `phone:device` from the directory, consuming one one-time key.
fn take_bundle(inner: &Inner, phone: &str, device: u16) -> Option<Bundle> {
    let mut st = inner.state();
    let keys = &mut st.phones.get_mut(phone)?.devices.get_mut(&device)?.keys;
    let signed_prekey = keys.signed_prekey.clone()?;
    let prekey = (!keys.prekeys.is_empty()).then(|| keys.prekeys.remove(0));
    Some(Bundle { registration_id: keys.registration_id, identity: keys.identity.clone(), signed_prekey, prekey })
}
