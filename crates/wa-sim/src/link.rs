//! The server's side of linking a companion: once a phone scanned its QR code, or its owner
//! typed the companion's code, the server sends `pair-success` as the phone's new device, and
//! records the device when the companion answers with its countersigned identity.
//!
//! The QR code and pairing-code cryptography is the phone's, in `pairing`; this module keeps
//! the world's records of it, for the `Sim` API (the phone's actions) and the router (the
//! companion's answers).

use std::sync::Arc;

use anyhow::{anyhow, bail};
use wacore_binary::builder::NodeBuilder;

use crate::clock::now;
use crate::events::SimEvent;
use crate::messages::send_message;
use crate::pairing;
use crate::state::{Addressing, Device, Inner, SERVER, State};

/// The companion signed its identity: it is linked. Tell it to reconnect (515) and log in.
pub(crate) fn complete_link(inner: &Arc<Inner>, conn: u64, iq_id: &str, signed_identity: &[u8]) {
    let mut st = inner.state();
    let Some(pending) =
        st.pending.values().find(|p| p.conn == conn && p.linking.as_ref().is_some_and(|l| l.3 == iq_id))
    else {
        return;
    };
    let Some((phone, device, key_index, _)) = pending.linking.clone() else { return };
    let Some(account_key) = st.phones.get(&phone).map(|p| p.account.public_key.public_key_bytes().to_vec()) else {
        return;
    };
    if let Err(e) = pairing::verify_device_signature(signed_identity, &pending.identity_public, &account_key) {
        tracing::warn!(error = %e, "companion answered pair-success with a bad signature");
        return;
    }
    let record = Device {
        noise_public: pending.noise_public,
        key_index,
        keys: pending.keys.clone(),
        signed_identity: signed_identity.to_vec(),
    };
    st.pending.retain(|_, p| p.conn != conn);
    if let Some(p) = st.phones.get_mut(&phone) {
        p.devices.insert(device, record);
    }
    st.send(conn, NodeBuilder::new("stream:error").attr("code", "515").build());
    st.close(conn);
    drop(st);
    inner.events.push(SimEvent::DeviceLinked { phone: phone.clone(), device });
    // As a phone does right after linking: the initial history sync (this simulated account
    // has no history, so its one chunk is complete and inline), then the app-state key, so
    // the device need not wait for either. Both are queued for the device's first login;
    // clients hold their first events until the history sync arrives (Baileys for 20 s).
    let inner = inner.clone();
    tokio::spawn(async move {
        let after_link = [
            ("the initial history sync", crate::contacts::initial_history_sync()),
            ("the app-state key", crate::contacts::app_state_key_share(now())),
        ];
        for (what, message) in after_link {
            if let Err(e) = send_message(&inner, &phone, &phone, &message, Addressing::Phone, Some(device), None).await
            {
                tracing::warn!(error = %format!("{e:#}"), "could not send {what}");
            }
        }
    });
}

/// Sends `pair-success` to a registering connection, as `phone`'s new device.
pub(crate) fn send_pair_success(st: &mut State, phone: &str, conn: u64, adv_secret: &[u8; 32]) -> anyhow::Result<()> {
    let id = st.next_id();
    let p = st.phones.get_mut(phone).ok_or_else(|| anyhow!("no phone {phone}; add it first"))?;
    let pending = st
        .pending
        .values_mut()
        .find(|p| p.conn == conn)
        .ok_or_else(|| anyhow!("that device is no longer waiting to be linked"))?;
    if pending.linking.is_some() {
        bail!("this device is already being linked");
    }
    let device = p.next_device;
    let key_index = p.next_key_index;
    p.next_device += 1;
    p.next_key_index += 1;
    let identity = pairing::device_identity(&p.account, &pending.identity_public, adv_secret, key_index, now());
    let success = NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("type", "set")
        .attr("id", id.clone())
        .attr("xmlns", "md")
        .children([NodeBuilder::new("pair-success")
            .children([
                NodeBuilder::new("device-identity").bytes(identity).build(),
                NodeBuilder::new("device")
                    .attr("jid", format!("{phone}:{device}@s.whatsapp.net"))
                    .attr("lid", format!("{}:{device}@lid", p.lid))
                    .build(),
                NodeBuilder::new("platform").attr("name", "android").build(),
            ])
            .build()])
        .build();
    pending.linking = Some((phone.to_owned(), device, key_index, id));
    st.send(conn, success);
    Ok(())
}

/// The registering companion's identity key, as it sent it at registration.
pub(crate) fn companion_identity(st: &State, conn: u64) -> Option<[u8; 32]> {
    st.pending.values().find(|p| p.conn == conn).map(|p| p.identity_public)
}
