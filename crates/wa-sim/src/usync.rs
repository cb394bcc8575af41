//! `usync`: who is on WhatsApp, their devices, and their LID.
//!
//! Clients ask before they encrypt (which devices does this user have?), when they learn a
//! LID<->phone mapping, and to check numbers. The server answers from its registry.

use buffa::Message as _;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use waproto::whatsapp as wa;

use crate::clock::now;
use crate::state::{Phone, State};

/// The list of a phone's devices, signed by its account key as WhatsApp signs it.
fn key_index_list(phone: &Phone) -> Vec<u8> {
    let valid: Vec<u32> = phone.devices.values().map(|d| d.key_index).collect();
    let details = wa::ADVKeyIndexList {
        raw_id: Some(1),
        timestamp: Some(now()),
        current_index: valid.iter().copied().max(),
        valid_indexes: valid,
        ..Default::default()
    }
    .encode_to_vec();
    let mut msg = vec![6, 2];
    msg.extend_from_slice(&details);
    let signature = phone
        .account
        .private_key
        .calculate_signature(&msg, &mut rand::rng())
        .expect("XEdDSA signing cannot fail for a valid key")
        .to_vec();
    wa::ADVSignedKeyIndexList { details: Some(details), account_signature: Some(signature), ..Default::default() }
        .encode_to_vec()
}

fn devices_node(phone: &Phone) -> Node {
    let mut list = vec![NodeBuilder::new("device").attr("id", "0").build()];
    list.extend(phone.devices.iter().map(|(id, d)| {
        NodeBuilder::new("device").attr("id", id.to_string()).attr("key-index", d.key_index.to_string()).build()
    }));
    let mut children = vec![NodeBuilder::new("device-list").children(list).build()];
    if !phone.devices.is_empty() {
        children.push(
            NodeBuilder::new("key-index-list").attr("ts", now().to_string()).bytes(key_index_list(phone)).build(),
        );
    }
    NodeBuilder::new("devices").children(children).build()
}

/// Answers a `<usync>` query.
pub(crate) fn answer(st: &State, usync: &Node) -> Node {
    let query = usync.get_optional_child("query");
    let wants = |what: &str| query.is_some_and(|q| q.get_optional_child(what).is_some());
    let users =
        usync.get_optional_child("list").map(|l| l.get_children_by_tag("user").collect::<Vec<_>>()).unwrap_or_default();
    let mut out = Vec::new();
    for user in users {
        let jid = user.attrs.get("jid").map(|v| v.as_str().into_owned());
        let contact = user.get_optional_child("contact").and_then(|c| c.content_as_string()).map(|s| s.to_string());
        // A user is named by JID (phone or LID) or, for number checks, by a written number.
        let found = match (&jid, &contact) {
            (Some(j), _) => {
                let (u, server) = j.split_once('@').unwrap_or((j, ""));
                let u = u.split(':').next().unwrap_or(u);
                match server {
                    "lid" => st.phones.iter().find(|(_, p)| p.lid == u),
                    _ => st.phones.get_key_value(u),
                }
            }
            (None, Some(c)) => {
                let digits: String = c.chars().filter(char::is_ascii_digit).collect();
                st.phones.get_key_value(digits.as_str())
            }
            (None, None) => None,
        };
        let reply_jid = jid.clone().or_else(|| found.map(|(pn, _)| format!("{pn}@s.whatsapp.net"))).unwrap_or_default();
        let mut children = Vec::new();
        if let Some((_, phone)) = found {
            if wants("devices") {
                children.push(devices_node(phone));
            }
            if wants("lid") {
                children.push(NodeBuilder::new("lid").attr("val", format!("{}@lid", phone.lid)).build());
            }
        }
        if wants("contact") {
            let kind = if found.is_some() { "in" } else { "out" };
            let mut c = NodeBuilder::new("contact").attr("type", kind);
            if let Some(text) = &contact {
                c = c.string_content(text.as_str());
            }
            children.push(c.build());
        }
        out.push(NodeBuilder::new("user").attr("jid", reply_jid).children(children).build());
    }
    let mut reply = NodeBuilder::new("usync");
    for key in ["sid", "mode", "context", "index"] {
        if let Some(v) = usync.attrs.get(key) {
            reply = reply.attr(key, v.as_str().into_owned());
        }
    }
    reply.attr("last", "true").children([NodeBuilder::new("list").children(out).build()]).build()
}
