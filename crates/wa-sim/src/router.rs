//! What the server does with each stanza a client sends.
//!
//! The answers follow what whatsapp-rust sends and expects (its request builders and response
//! parsers are the specification we can read); anything not simulated yet is answered with
//! a well-formed `501 feature-not-implemented`, which the client treats as a failed optional
//! request rather than a broken connection.

use std::sync::Arc;

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::clock::now;
use crate::events::SimEvent;
use crate::keys::PublishedKeys;
use crate::link::{companion_identity, complete_link, send_pair_success};
use crate::messages::{crypto_for, resend_after_retry};
use crate::state::{CodeFlow, Inner, Peer, SERVER, State};

fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.as_str().into_owned())
}

fn child<'a>(node: &'a Node, tag: &str) -> Option<&'a Node> {
    node.get_optional_child(tag)
}

fn result(id: &str, children: Vec<Node>) -> Node {
    let b = NodeBuilder::new("iq").attr("from", SERVER).attr("type", "result").attr("id", id.to_owned());
    if children.is_empty() { b.build() } else { b.children(children).build() }
}

fn error(id: &str, code: u16, text: &str) -> Node {
    NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("type", "error")
        .attr("id", id.to_owned())
        .children([NodeBuilder::new("error").attr("code", code.to_string()).attr("text", text.to_owned()).build()])
        .build()
}

pub(crate) fn handle(inner: &Arc<Inner>, conn: u64, node: Node) {
    if inner.events.records_stanzas() {
        let xml = wacore::xml::DisplayableNode(&node).to_string();
        inner.events.push(SimEvent::Stanza { conn, inbound: true, xml });
    }
    let peer = match inner.state().conns.get(&conn) {
        Some(c) => c.peer.clone(),
        None => return,
    };
    match (node.tag.as_ref(), &peer) {
        ("iq", Peer::Registering) => registering_iq(inner, conn, &node),
        ("iq", Peer::Device { phone, device }) => device_iq(inner, conn, phone, *device, &node),
        ("message", Peer::Device { phone, device }) => {
            outgoing_message(inner.clone(), conn, phone.clone(), *device, &node)
        }
        // Either acknowledges a message we delivered: it is not delivered again.
        ("receipt" | "ack", Peer::Device { phone, device }) => {
            let is_message = node.tag == "receipt" || attr(&node, "class").as_deref() == Some("message");
            // One receipt may cover several messages of a sender: the rest in `<list><item id>`.
            let mut ids: Vec<String> = attr(&node, "id").into_iter().collect();
            if let Some(list) = child(&node, "list") {
                ids.extend(list.get_children_by_tag("item").filter_map(|i| attr(i, "id")));
            }
            // A media re-upload request: the sender's phone uploads the media again (or says it
            // cannot) and the server passes its answer on. Not a delivery receipt.
            if node.tag == "receipt" && attr(&node, "type").as_deref() == Some("server-error") {
                if let Some(id) = attr(&node, "id") {
                    let to = attr(&node, "to").unwrap_or_default();
                    let answer = crate::media::retry_notification(&inner.cdn, &id, &to, &node);
                    inner.state().send(conn, answer);
                }
                return;
            }
            // A retry receipt: the device could not decrypt; the sender's phone sends again.
            if node.tag == "receipt" && attr(&node, "type").as_deref() == Some("retry") {
                let count =
                    child(&node, "retry").and_then(|r| attr(r, "count")).and_then(|c| c.parse().ok()).unwrap_or(1);
                for id in &ids {
                    tokio::spawn(resend_after_retry(inner.clone(), phone.clone(), *device, id.clone(), count));
                }
            }
            for id in ids.into_iter().filter(|_| is_message) {
                let removed = {
                    let mut st = inner.state();
                    let queue = st.undelivered.entry((phone.clone(), *device)).or_default();
                    let before = queue.len();
                    queue.retain(|(pending, _)| *pending != id);
                    before != queue.len()
                };
                if removed {
                    inner.events.push(SimEvent::MessageDelivered { phone: phone.clone(), device: *device, id });
                }
            }
        }
        // Presence, chat states, unified-session beacons and acks of server stanzas need no answer.
        _ => {}
    }
}

fn registering_iq(inner: &Arc<Inner>, conn: u64, node: &Node) {
    let Some(id) = attr(node, "id") else { return };
    match attr(node, "type").as_deref() {
        // The answer to pair-success: the companion's countersigned identity.
        Some("result") => {
            if let Some(identity) = child(node, "pair-device-sign").and_then(|n| child(n, "device-identity"))
                && let Some(wacore_binary::NodeContent::Bytes(bytes)) = &identity.content
            {
                complete_link(inner, conn, &id, bytes);
            }
        }
        Some("set") if child(node, "link_code_companion_reg").is_some() => link_code_iq(inner, conn, &id, node),
        // Keepalives come before linking too (Baileys sends them at once).
        Some("get") if attr(node, "xmlns").as_deref() == Some("w:p") => inner.state().send(conn, result(&id, vec![])),
        Some("get" | "set") => inner.state().send(conn, error(&id, 501, "feature-not-implemented")),
        _ => {}
    }
}

fn bytes<'a>(node: &'a Node, tag: &str) -> Option<&'a [u8]> {
    match &node.get_optional_child(tag)?.content {
        Some(wacore_binary::NodeContent::Bytes(b)) => Some(b),
        _ => None,
    }
}

/// Linking by code, the companion's two stages.
fn link_code_iq(inner: &Inner, conn: u64, id: &str, node: &Node) {
    let Some(reg) = child(node, "link_code_companion_reg") else { return };
    let phone = attr(reg, "jid").and_then(|j| j.split('@').next().map(str::to_owned)).unwrap_or_default();
    let mut st = inner.state();
    match attr(reg, "stage").as_deref() {
        Some("companion_hello") => {
            let Some(wrapped) = bytes(reg, "link_code_pairing_wrapped_companion_ephemeral_pub") else {
                return st.send(conn, error(id, 400, "bad-request"));
            };
            if !st.phones.contains_key(&phone) {
                return st.send(conn, error(id, 404, "item-not-found"));
            }
            let pairing_ref = format!("{}", rand::random::<u64>());
            st.code_flows.insert(
                phone,
                CodeFlow {
                    conn,
                    wrapped_companion_ephemeral: wrapped.to_vec(),
                    pairing_ref: pairing_ref.clone(),
                    hello: None,
                },
            );
            st.send(
                conn,
                result(
                    id,
                    vec![
                        NodeBuilder::new("link_code_companion_reg")
                            .children([NodeBuilder::new("link_code_pairing_ref")
                                .bytes(pairing_ref.into_bytes())
                                .build()])
                            .build(),
                    ],
                ),
            );
            drop(st);
            inner.events.push(SimEvent::PairingCodeRequested { conn, phone: attr(reg, "jid").unwrap_or_default() });
        }
        Some("companion_finish") => {
            let st = &mut *st;
            let outcome = (|| -> anyhow::Result<[u8; 32]> {
                let flow = st
                    .code_flows
                    .get(&phone)
                    .filter(|f| f.conn == conn)
                    .ok_or_else(|| anyhow::anyhow!("no code flow"))?;
                let hello = flow.hello.as_ref().ok_or_else(|| anyhow::anyhow!("the phone has not entered a code"))?;
                let bundle = bytes(reg, "link_code_pairing_wrapped_key_bundle")
                    .ok_or_else(|| anyhow::anyhow!("no key bundle"))?;
                let identity: [u8; 32] = bytes(reg, "companion_identity_public")
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| anyhow::anyhow!("no identity key"))?;
                if companion_identity(st, conn) != Some(identity) {
                    anyhow::bail!("identity differs from the one registered");
                }
                let account = &st.phones.get(&phone).ok_or_else(|| anyhow::anyhow!("no phone"))?.account;
                crate::pairing::open_key_bundle(hello, account, bundle, &identity)
            })();
            match outcome {
                Ok(adv_secret) => {
                    st.send(conn, result(id, vec![]));
                    st.code_flows.remove(&phone);
                    if let Err(e) = send_pair_success(st, &phone, conn, &adv_secret) {
                        tracing::warn!(error = %e, "pair-success after code failed");
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "companion_finish refused");
                    st.send(conn, error(id, 401, "not-authorized"));
                    inner.events.push(SimEvent::PairingCodeRejected { conn, reason: e.to_string() });
                }
            }
        }
        _ => st.send(conn, error(id, 400, "bad-request")),
    }
}

fn device_iq(inner: &Inner, conn: u64, phone: &str, device: u16, node: &Node) {
    let Some(id) = attr(node, "id") else { return };
    let kind = attr(node, "type").unwrap_or_default();
    if kind == "result" || kind == "error" {
        return;
    }
    let xmlns = attr(node, "xmlns").unwrap_or_default();
    let mut st = inner.state();
    let answer = match xmlns.as_str() {
        // Keepalive.
        "w:p" => result(&id, vec![]),
        // Leaving passive mode: the offline queue is delivered, then its end is marked.
        "passive" => {
            let active = child(node, "active").is_some();
            st.send(conn, result(&id, vec![]));
            if active {
                // What the device has not acknowledged yet, with the same ids, then the marker.
                let queued: Vec<Node> = st
                    .undelivered
                    .get(&(phone.to_owned(), device))
                    .map(|q| q.iter().map(|(_, n)| n.clone()).collect())
                    .unwrap_or_default();
                let count = queued.len();
                for mut n in queued {
                    n.attrs.insert("offline", "1");
                    st.send(conn, n);
                }
                st.send(
                    conn,
                    NodeBuilder::new("ib")
                        .attr("from", SERVER)
                        .children([NodeBuilder::new("offline").attr("count", count.to_string()).build()])
                        .build(),
                );
                drop(st);
                inner.events.push(SimEvent::Active { phone: phone.to_owned(), device });
            }
            return;
        }
        "encrypt" => encrypt(&mut st, phone, device, &id, node),
        "usync" => match child(node, "usync") {
            Some(q) => result(&id, vec![crate::usync::answer(&st, q)]),
            None => error(&id, 400, "bad-request"),
        },
        // Where media goes: the simulator's CDN on loopback.
        "w:m" if child(node, "media_conn").is_some() => result(
            &id,
            vec![
                NodeBuilder::new("media_conn")
                    .attr("auth", inner.cdn.auth())
                    .attr("ttl", "300")
                    .attr("auth_ttl", "21600")
                    .attr("max_buckets", "12")
                    .children([NodeBuilder::new("host").attr("hostname", inner.cdn.host()).build()])
                    .build(),
            ],
        ),
        // Server-side A/B properties: none are set.
        "abt" => result(&id, vec![NodeBuilder::new("props").attr("protocol", "1").attr("hash", "sim").build()]),
        // Trusted-contact tokens the client issues after writing to someone: accepted.
        "privacy" if kind == "set" => result(&id, vec![]),
        "privacy" if kind == "get" => result(
            &id,
            vec![
                NodeBuilder::new("privacy")
                    .children(
                        [
                            ("last", "all"),
                            ("online", "all"),
                            ("profile", "all"),
                            ("status", "all"),
                            ("readreceipts", "all"),
                            ("groupadd", "all"),
                            ("calladd", "all"),
                        ]
                        .map(|(name, value)| {
                            NodeBuilder::new("category").attr("name", name).attr("value", value).build()
                        }),
                    )
                    .build(),
            ],
        ),
        // App-state sync: a new account has no state yet, so every collection is empty at
        // version 0.
        "w:sync:app:state" => {
            let collections: Vec<Node> = child(node, "sync")
                .map(|s| {
                    s.get_children_by_tag("collection")
                        .filter_map(|c| attr(c, "name"))
                        .map(|name| NodeBuilder::new("collection").attr("name", name).attr("version", "0").build())
                        .collect()
                })
                .unwrap_or_default();
            result(&id, vec![NodeBuilder::new("sync").children(collections).build()])
        }
        "blocklist" => result(&id, vec![NodeBuilder::new("list").build()]),
        // Group metadata: its subject and members.
        "w:g2" if child(node, "query").is_some() => {
            let group_id = attr(node, "to").and_then(|t| t.split('@').next().map(str::to_owned)).unwrap_or_default();
            match st.groups.get(&group_id) {
                Some(g) => result(&id, vec![g.node(&group_id)]),
                None => error(&id, 404, "item-not-found"),
            }
        }
        // The companion logs itself out: it leaves the phone's Linked Devices.
        "md" if child(node, "remove-companion-device").is_some() => {
            let removed = st.phones.get_mut(phone).and_then(|p| p.devices.remove(&device)).is_some();
            st.send(conn, if removed { result(&id, vec![]) } else { error(&id, 404, "item-not-found") });
            drop(st);
            if removed {
                inner.events.push(SimEvent::DeviceUnlinked { phone: phone.to_owned(), device });
            }
            return;
        }
        _ => error(&id, 501, "feature-not-implemented"),
    };
    st.send(conn, answer);
}

/// The `encrypt` namespace for a logged-in device.
fn encrypt(st: &mut State, phone: &str, device: u16, id: &str, node: &Node) -> Node {
    if let Some(key) = child(node, "key") {
        // Bundles for the devices someone is about to encrypt to.
        let users: Vec<Node> = key
            .get_children_by_tag("user")
            .filter_map(|u| attr(u, "jid"))
            .map(|jid| {
                let (user, server) = jid.split_once('@').unwrap_or((&jid, ""));
                let (user, dev) = user.split_once(':').map_or((user, 0), |(u, d)| (u, d.parse().unwrap_or(0)));
                let owner = match server {
                    "lid" => st.phones.values_mut().find(|p| p.lid == user),
                    _ => st.phones.get_mut(user),
                };
                match owner {
                    Some(p) if dev == 0 => crate::keys::bundle(&jid, &mut p.keys, None),
                    Some(p) => match p.devices.get_mut(&dev) {
                        Some(d) => crate::keys::bundle(&jid, &mut d.keys, Some(&d.signed_identity)),
                        None => crate::keys::bundle(&jid, &mut PublishedKeys::default(), None),
                    },
                    None => crate::keys::bundle(&jid, &mut PublishedKeys::default(), None),
                }
            })
            .collect();
        return result(id, vec![NodeBuilder::new("list").children(users).build()]);
    }
    let Some(dev) = st.phones.get_mut(phone).and_then(|p| p.devices.get_mut(&device)) else {
        return error(id, 404, "item-not-found");
    };
    if child(node, "count").is_some() {
        return result(id, vec![NodeBuilder::new("count").attr("value", dev.keys.prekeys.len().to_string()).build()]);
    }
    if child(node, "digest").is_some() {
        return match crate::keys::digest(&dev.keys) {
            Some(d) => result(id, vec![d]),
            None => error(id, 404, "item-not-found"),
        };
    }
    if attr(node, "type").as_deref() == Some("set") {
        crate::keys::apply_upload(&mut dev.keys, node);
        return result(id, vec![]);
    }
    error(id, 501, "feature-not-implemented")
}

/// A device sends a message: the server takes it (ack), then each recipient device gets its
/// ciphertext. A contact (an account's phone) decrypts and answers with delivery and read
/// receipts; another linked device gets it relayed, queued until it acknowledges.
fn outgoing_message(inner: Arc<Inner>, conn: u64, phone: String, device: u16, node: &Node) {
    let Some(id) = attr(node, "id") else { return };
    let to = attr(node, "to").unwrap_or_default();
    let kind = attr(node, "type").unwrap_or_else(|| "text".to_owned());
    inner.state().send(
        conn,
        NodeBuilder::new("ack")
            .attr("class", "message")
            .attr("id", id.clone())
            .attr("from", to.clone())
            .attr("t", now().to_string())
            .build(),
    );
    let enc_of = |n: &Node| {
        let enc = child(n, "enc")?;
        match &enc.content {
            Some(wacore_binary::NodeContent::Bytes(b)) => Some((attr(enc, "type").unwrap_or_default(), b.clone())),
            _ => None,
        }
    };
    let mut targets: Vec<(String, String, Vec<u8>)> = Vec::new();
    // A group message carries its text once, under the sender key (`skmsg`), and the sender
    // key's distribution pairwise to the devices that do not have it yet.
    let group = to.ends_with("@g.us").then(|| to.clone());
    let skmsg: Option<Vec<u8>> = node.get_children_by_tag("enc").find_map(|e| match (&e.content, attr(e, "type")) {
        (Some(wacore_binary::NodeContent::Bytes(b)), Some(t)) if t == "skmsg" => Some(b.clone()),
        _ => None,
    });
    if let Some(group) = group {
        let targets: Vec<(String, String, Vec<u8>)> = child(node, "participants")
            .map(|parts| {
                parts
                    .get_children_by_tag("to")
                    .filter_map(|t| Some((attr(t, "jid")?, enc_of(t)?)))
                    .map(|(jid, (k, ct))| (jid, k, ct))
                    .collect()
            })
            .unwrap_or_default();
        tokio::spawn(group_message(inner, conn, phone, device, id, group, targets, skmsg));
        return;
    }
    match child(node, "participants") {
        Some(parts) => {
            for t in parts.get_children_by_tag("to") {
                if let (Some(jid), Some((k, ct))) = (attr(t, "jid"), enc_of(t)) {
                    targets.push((jid, k, ct));
                }
            }
        }
        None => {
            if let Some((k, ct)) = enc_of(node) {
                targets.push((to.clone(), k, ct));
            }
        }
    }
    tokio::spawn(async move {
        for (jid, enc_kind, ciphertext) in targets {
            let (user, server) = jid.split_once('@').unwrap_or((&jid, "s.whatsapp.net"));
            let (user, target_device) = user.split_once(':').map_or((user, 0u16), |(u, d)| (u, d.parse().unwrap_or(0)));
            let owner = {
                let st = inner.state();
                match server {
                    "lid" => st.phones.iter().find(|(_, p)| p.lid == user).map(|(pn, _)| pn.clone()),
                    _ => st.phones.contains_key(user).then(|| user.to_owned()),
                }
            };
            let Some(owner) = owner else { continue };
            if target_device != 0 {
                relay(&inner, &phone, device, &owner, target_device, &id, &kind, &enc_kind, ciphertext);
                continue;
            }
            // The sender's own phone gets a copy (a DSM) of everything its linked device sends.
            // Only a message to the account's own chat is recorded as received (that is how a
            // self-chat reply reaches the owner); other copies have no one to show them to.
            let is_own_copy = owner == phone;
            let own_lid = inner.state().phones.get(&phone).map(|p| p.lid.clone()).unwrap_or_default();
            let to_self = to.starts_with(&format!("{phone}@")) || to.starts_with(&format!("{own_lid}@"));
            if is_own_copy && !to_self {
                continue;
            }
            // The contact's sessions are named per addressing mode (as `Sim::send_text` names
            // them), but the client keeps one session per person across its LID and phone
            // number: a `msg` may arrive on either, so both are tried.
            let lid_name = format!("{phone}.lid");
            let names = if server == "lid" { [lid_name, phone.clone()] } else { [phone.clone(), lid_name] };
            let message = {
                let mut contacts = inner.contacts.lock().await;
                let mut outcome = Err(anyhow::anyhow!("no session"));
                for name in &names {
                    let sender = wacore_libsignal::protocol::ProtocolAddress::new(name, u32::from(device).into());
                    outcome = match crypto_for(&inner, &mut contacts, &owner) {
                        Ok(crypto) => crate::contacts::decrypt(crypto, &sender, &enc_kind, &ciphertext).await,
                        Err(e) => Err(e),
                    };
                    if outcome.is_ok() || enc_kind == "pkmsg" {
                        break;
                    }
                }
                match outcome {
                    Ok(message) => message,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "a contact could not decrypt a message");
                        continue;
                    }
                }
            };
            // A contact sees each message once, however often it arrives.
            let first = inner.state().received.insert((owner.clone(), id.clone()));
            if first {
                let carried =
                    message.device_sent_message.as_option().and_then(|d| d.message.as_option()).unwrap_or(&message);
                inner.events.push(match crate::media::receive(&inner.cdn, &phone, &id, carried) {
                    Some(Ok(media)) => SimEvent::MediaReceived { contact: owner.clone(), media },
                    Some(Err(e)) => SimEvent::MediaRejected {
                        contact: owner.clone(),
                        from: phone.clone(),
                        id: id.clone(),
                        reason: format!("{e:#}"),
                    },
                    None => SimEvent::MessageReceived {
                        contact: owner.clone(),
                        from: phone.clone(),
                        id: id.clone(),
                        text: crate::contacts::text_of(&message).unwrap_or_default(),
                    },
                });
            }
            if is_own_copy {
                continue;
            }
            let from = if server == "lid" { format!("{user}@lid") } else { format!("{owner}@s.whatsapp.net") };
            let st = inner.state();
            for receipt_type in [None, Some("read")] {
                let mut r = NodeBuilder::new("receipt")
                    .attr("id", id.clone())
                    .attr("from", from.clone())
                    .attr("t", now().to_string());
                if let Some(t) = receipt_type {
                    r = r.attr("type", t);
                }
                st.send(conn, r.build());
            }
        }
    });
}

/// A linked device wrote to a group: each member's phone keeps the sender key it distributed,
/// then reads the `skmsg` with it.
#[allow(clippy::too_many_arguments)]
async fn group_message(
    inner: Arc<Inner>,
    conn: u64,
    phone: String,
    device: u16,
    id: String,
    group: String,
    targets: Vec<(String, String, Vec<u8>)>,
    skmsg: Option<Vec<u8>>,
) {
    let sender = wacore_libsignal::protocol::ProtocolAddress::new(&phone, u32::from(device).into());
    let members: Vec<String> = {
        let st = inner.state();
        st.groups.get(group.split('@').next().unwrap_or_default()).map(|g| g.members.clone()).unwrap_or_default()
    };
    let mut contacts = inner.contacts.lock().await;
    for (jid, kind, ciphertext) in targets {
        let user = jid.split(['@', ':']).next().unwrap_or_default().to_owned();
        // Only the members' phones (device 0) read here; the sender's own devices are not ours.
        if user == phone || jid.contains(':') && !jid.contains(":0@") {
            continue;
        }
        let Ok(crypto) = crypto_for(&inner, &mut contacts, &user) else { continue };
        match crate::contacts::decrypt(crypto, &sender, &kind, &ciphertext).await {
            Ok(m) => {
                if let Some(skdm) = m.sender_key_distribution_message.as_option()
                    && let Some(bytes) = &skdm.axolotl_sender_key_distribution_message
                    && let Err(e) = crate::contacts::process_distribution(crypto, &group, &sender, bytes).await
                {
                    tracing::warn!(error = %format!("{e:#}"), "a member could not keep a sender key");
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "a member could not decrypt a sender key"),
        }
    }
    let Some(skmsg) = skmsg else { return };
    for member in members.into_iter().filter(|m| *m != phone) {
        let Ok(crypto) = crypto_for(&inner, &mut contacts, &member) else { continue };
        let text = match crate::contacts::group_decrypt_message(crypto, &group, &sender, &skmsg).await {
            Ok(m) => crate::contacts::text_of(&m).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), member, "a member could not read a group message");
                continue;
            }
        };
        if inner.state().received.insert((member.clone(), id.clone())) {
            inner.events.push(SimEvent::MessageReceived {
                contact: member.clone(),
                from: phone.clone(),
                id: id.clone(),
                text,
            });
        }
        let st = inner.state();
        for receipt_type in [None, Some("read")] {
            let mut r = NodeBuilder::new("receipt")
                .attr("id", id.clone())
                .attr("from", group.clone())
                .attr("participant", format!("{member}@s.whatsapp.net"))
                .attr("t", now().to_string());
            if let Some(t) = receipt_type {
                r = r.attr("type", t);
            }
            st.send(conn, r.build());
        }
    }
}

/// Passes a message on to another linked device, queued until it acknowledges.
#[allow(clippy::too_many_arguments)]
fn relay(
    inner: &Inner,
    from_phone: &str,
    from_device: u16,
    to_phone: &str,
    to_device: u16,
    id: &str,
    kind: &str,
    enc_kind: &str,
    ciphertext: Vec<u8>,
) {
    let node = NodeBuilder::new("message")
        .attr("from", format!("{from_phone}:{from_device}@s.whatsapp.net"))
        .attr("id", id.to_owned())
        .attr("t", now().to_string())
        .attr("type", kind.to_owned())
        .children([NodeBuilder::new("enc").attr("v", "2").attr("type", enc_kind.to_owned()).bytes(ciphertext).build()])
        .build();
    inner.state().deliver(to_phone, to_device, id, node);
}
