//! The client's store behind a fence: once a write fails, nothing more reaches the disk.
//!
//! whatsapp-rust advances a Signal session in memory when it decrypts, and writes the advance
//! out shortly after, whatever became of the message. When its own write of the decrypted
//! message fails (a full disk), the message is not acknowledged, but the advance still reaches
//! the disk once space returns; the server's redelivery then fails to decrypt as a duplicate
//! and is acknowledged without ever reaching the journal: lost. The fence closes that hole.
//! The first failed write trips it, every later write is refused (so the advance never lands)
//! and a pending-message lookup fails (so a duplicate is never acknowledged); the supervisor
//! is told, drops this client and builds a new one from what is on disk, where the message
//! is still undecrypted, once storage is healthy again. A tripped fence is never reset: a new
//! client gets a new fence.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use wacore::appstate::hash::HashState;
use wacore::appstate::processor::AppStateMutationMAC;
use wacore::store::error::{Result, StoreError};
use wacore::store::traits::*;
use whatsapp_rust::store::SqliteStore;

/// Tripped by the first failed write; wakes the supervisor once.
#[derive(Debug)]
pub struct Fence {
    tripped: AtomicBool,
    why: Mutex<Option<String>>,
    notify: Arc<tokio::sync::Notify>,
}

impl Fence {
    /// A fence that wakes `notify` when it trips.
    pub fn new(notify: Arc<tokio::sync::Notify>) -> Arc<Fence> {
        Arc::new(Fence { tripped: AtomicBool::new(false), why: Mutex::new(None), notify })
    }

    /// Closes the fence for good, keeping the first reason.
    pub fn trip(&self, why: impl Into<String>) {
        let mut first = self.why.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if first.is_none() {
            *first = Some(why.into());
        }
        // Once: a late failure of a write already under way must not wake anyone again.
        if !self.tripped.swap(true, Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }

    pub fn is_tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }

    /// Why it tripped, if it did.
    pub fn why(&self) -> Option<String> {
        self.why.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn check(&self) -> Result<()> {
        if self.is_tripped() {
            return Err(StoreError::Io(std::io::Error::other(
                "the session store is fenced after a failed write; the client is being rebuilt from disk",
            )));
        }
        Ok(())
    }

    fn watch<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            self.trip(format!("the session store could not be written: {e}"));
        }
        result
    }
}

/// whatsapp-rust's SQLite store, with every write behind a [`Fence`], and redeliveries
/// checked against the journal.
pub(crate) struct FencedStore {
    inner: SqliteStore,
    fence: Arc<Fence>,
    journal: Option<crate::journal::JournalHook>,
}

impl FencedStore {
    pub(crate) fn new(
        inner: SqliteStore,
        fence: Arc<Fence>,
        journal: Option<crate::journal::JournalHook>,
    ) -> FencedStore {
        FencedStore { inner, fence, journal }
    }
}

// Every method is forwarded, defaults included, so the inner store's batching is kept. Writes
// go through the fence; reads do not, except the pending-message lookup that decides whether
// a duplicate is acknowledged.
#[async_trait]
impl SignalStore for FencedStore {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.put_identity(address, key).await)
    }

    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.put_identities_batch(identities).await)
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        self.inner.load_identity(address).await
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.delete_identity(address).await)
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        self.inner.get_session(address).await
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.put_session(address, session).await)
    }

    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.put_sessions_batch(sessions).await)
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.delete_session(address).await)
    }

    async fn has_session(&self, address: &str) -> Result<bool> {
        self.inner.has_session(address).await
    }

    async fn has_signal_state_for_user(&self, user: &str) -> Result<bool> {
        self.inner.has_signal_state_for_user(user).await
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.store_prekey(id, record, uploaded).await)
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.store_prekeys_batch(keys, uploaded).await)
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        self.inner.load_prekey(id).await
    }

    async fn load_prekeys_batch(&self, ids: &[u32]) -> Result<Vec<(u32, Bytes)>> {
        self.inner.load_prekeys_batch(ids).await
    }

    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.mark_prekeys_uploaded(ids).await)
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.remove_prekey(id).await)
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        self.inner.get_max_prekey_id().await
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.store_signed_prekey(id, record).await)
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        self.inner.load_signed_prekey(id).await
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        self.inner.load_all_signed_prekeys().await
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.remove_signed_prekey(id).await)
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.put_sender_key(address, record).await)
    }

    async fn put_sender_keys_batch(&self, sender_keys: &[(Arc<str>, Bytes)]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.put_sender_keys_batch(sender_keys).await)
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get_sender_key(address).await
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.delete_sender_key(address).await)
    }
}

#[async_trait]
impl AppSyncStore for FencedStore {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        self.inner.get_sync_key(key_id).await
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.set_sync_key(key_id, key).await)
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        self.inner.get_version(name).await
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.set_version(name, state).await)
    }

    async fn put_mutation_macs(&self, name: &str, version: u64, mutations: &[AppStateMutationMAC]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.put_mutation_macs(name, version, mutations).await)
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get_mutation_mac(name, index_mac).await
    }

    async fn get_mutation_macs(
        &self,
        name: &str,
        index_macs: &[[u8; 32]],
    ) -> Result<std::collections::HashMap<[u8; 32], Vec<u8>>> {
        self.inner.get_mutation_macs(name, index_macs).await
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.delete_mutation_macs(name, index_macs).await)
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.clear_mutation_macs(name).await)
    }

    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        self.inner.get_latest_sync_key_id().await
    }
}

#[async_trait]
impl ProtocolStore for FencedStore {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        self.inner.get_sender_key_devices(group_jid).await
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.set_sender_key_status(group_jid, entries).await)
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.clear_sender_key_devices(group_jid).await)
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.delete_sender_key_device_rows(device_jids).await)
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.clear_all_sender_key_devices().await)
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        self.inner.get_lid_mapping(lid).await
    }

    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        self.inner.get_pn_mapping(phone).await
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.put_lid_mapping(entry).await)
    }

    async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.put_lid_mappings(entries).await)
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        self.inner.get_all_lid_mappings().await
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.save_base_key(address, message_id, base_key).await)
    }

    async fn has_same_base_key(&self, address: &str, message_id: &str, current_base_key: &[u8]) -> Result<bool> {
        self.inner.has_same_base_key(address, message_id, current_base_key).await
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.delete_base_key(address, message_id).await)
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.update_device_list(record).await)
    }

    async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.update_device_lists(records).await)
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        self.inner.get_devices(user).await
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.delete_devices(user).await)
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get_group_metadata(group_jid).await
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.put_group_metadata(group_jid, blob).await)
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.delete_group_metadata(group_jid).await)
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        self.inner.get_tc_token(jid).await
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.put_tc_token(jid, entry).await)
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.delete_tc_token(jid).await)
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        self.inner.get_all_tc_token_jids().await
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        self.fence.check()?;
        self.fence.watch(self.inner.delete_expired_tc_tokens(token_cutoff, sender_cutoff).await)
    }

    async fn touch_tc_token_sender_timestamp(&self, jid: &str, sender_timestamp: i64) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.touch_tc_token_sender_timestamp(jid, sender_timestamp).await)
    }

    async fn store_received_tc_token(&self, jid: &str, token: &[u8], token_timestamp: i64) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.store_received_tc_token(jid, token, token_timestamp).await)
    }

    async fn store_sent_message(&self, chat_jid: &str, message_id: &str, payload: &[u8]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.store_sent_message(chat_jid, message_id, payload).await)
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        self.fence.check()?;
        self.fence.watch(self.inner.take_sent_message(chat_jid, message_id).await)
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.fence.check()?;
        self.fence.watch(self.inner.delete_expired_sent_messages(cutoff_timestamp).await)
    }

    async fn store_pending_inbound(&self, chat: &str, sender: &str, id: &str, message: &[u8]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.store_pending_inbound(chat, sender, id, message).await)
    }

    async fn get_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<Option<Vec<u8>>> {
        self.fence.check()?;
        let found = self.inner.get_pending_inbound(chat, sender, id).await?;
        // Asked when a redelivered message no longer decrypts (its key was used). Journaled by
        // us: a genuine duplicate, acknowledged. Never journaled: another client of this device
        // (Hermes' bridge, before an import) read it and its text went with it; a stand-in is
        // journaled instead, so the sender is asked to send it again, not left unanswered.
        if found.is_none()
            && let Some(journal) = &self.journal
            && !journal.is_journaled(chat, sender, id).await.map_err(|e| StoreError::Database(e.into()))?
        {
            tracing::warn!(
                "a message read by the previous client of this device came again; its sender is asked to resend it"
            );
            return Ok(Some(crate::journal::unreadable_stand_in()));
        }
        Ok(found)
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.delete_pending_inbound(chat, sender, id).await)
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.fence.check()?;
        self.fence.watch(self.inner.delete_expired_pending_inbound(cutoff_timestamp).await)
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.store_pending_inbound_batch(rows).await)
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.delete_pending_inbound_batch(keys).await)
    }
}

#[async_trait]
impl DeviceStore for FencedStore {
    async fn save(&self, device: &wacore::store::Device) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.save(device).await)
    }

    async fn load(&self) -> Result<Option<wacore::store::Device>> {
        self.inner.load().await
    }

    async fn exists(&self) -> Result<bool> {
        self.inner.exists().await
    }

    async fn create(&self) -> Result<i32> {
        self.fence.check()?;
        self.fence.watch(self.inner.create().await)
    }

    async fn snapshot_db(&self, name: &str, extra_content: Option<&[u8]>) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.snapshot_db(name, extra_content).await)
    }

    async fn resource_report(&self) -> wacore::stats::StorageResourceReport {
        self.inner.resource_report().await
    }
}

#[async_trait]
impl MsgSecretStore for FencedStore {
    async fn put_msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
        secret: &[u8; wacore::reporting_token::MESSAGE_SECRET_SIZE],
    ) -> Result<()> {
        self.fence.check()?;
        self.fence.watch(self.inner.put_msg_secret(chat, sender, msg_id, secret).await)
    }

    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        self.fence.check()?;
        self.fence.watch(self.inner.put_msg_secrets(entries).await)
    }

    async fn get_msg_secret(&self, chat: &str, sender: &str, msg_id: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get_msg_secret(chat, sender, msg_id).await
    }

    async fn get_msg_secret_with_ts(&self, chat: &str, sender: &str, msg_id: &str) -> Result<Option<(Vec<u8>, i64)>> {
        self.inner.get_msg_secret_with_ts(chat, sender, msg_id).await
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.fence.check()?;
        self.fence.watch(self.inner.delete_expired_msg_secrets(cutoff_timestamp).await)
    }
}

// Every method above is listed there, as a write or a read, and every write is called with the
// fence tripped: a method added here without its fence check fails them.
#[cfg(test)]
mod tests;
