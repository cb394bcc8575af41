//! Media both ways between a simulated contact and the real client, through wa-sim's CDN:
//! WhatsApp's media crypto on both sides, an expired object re-uploaded on request, a
//! corrupted one refused.

use std::time::Duration;

use wa_sim::{Fault, Media, MediaKind, Sim, SimEvent};
use whatsapp_rust::download::{DownloadParams, MediaType};
use whatsapp_rust::prelude::*;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{MediaRetryResult, MediaReuploadRequest};

use crate::client::{TestClient, init_logs};

const T: Duration = Duration::from_secs(30);
const ME: &str = "15550008888";
const CONTACT: &str = "4915100008888";

fn photo() -> Media {
    // Not a real JPEG: the CDN carries bytes, whatever they are. Long enough for many blocks.
    let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    Media { mime: "image/jpeg".into(), data, caption: Some("my cat".into()), ..Default::default() }
}

/// The first image message to arrive: (id, chat, image).
fn first_image(e: &Event) -> Option<(String, Jid, wa::message::ImageMessage)> {
    let Event::Messages(batch) = e else { return None };
    batch.messages.iter().find_map(|m| {
        let image = m.message.get_base_message().image_message.as_option()?.clone();
        Some((m.info.id.to_string(), m.info.source.chat.clone(), image))
    })
}

fn params(image: &wa::message::ImageMessage, direct_path: &str) -> DownloadParams {
    DownloadParams::encrypted(
        direct_path,
        image.media_key.as_deref().expect("media key"),
        image.file_sha256.as_deref().expect("sha"),
        image.file_enc_sha256.as_deref().expect("enc sha"),
        image.file_length.expect("length"),
        MediaType::Image,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_from_a_contact_downloads_decrypted_and_an_expired_one_is_uploaded_again() {
    init_logs();
    let sim = Sim::start().await.expect("sim");
    sim.add_phone(ME);
    sim.add_phone(CONTACT);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut client = TestClient::linked(&sim, ME, &dir.path().join("session.db")).await;

    let media = photo();
    let id = sim.send_media(CONTACT, ME, MediaKind::Image, &media).await.expect("send");
    let (got_id, chat, image) = client.wait(T, "the photo", first_image).await;
    assert_eq!(got_id, id);
    assert_eq!(image.caption.as_deref(), Some("my cat"));
    let bytes = client.client.download(&image).await.expect("download");
    assert_eq!(bytes, media.data, "the client decrypts what the contact sent");

    // Corrupted on the CDN: the client's MAC check refuses it, nothing is handed out.
    sim.inject(Fault::CorruptMedia { id: Some(id.clone()) }).expect("corrupt");
    let err = client.client.download(&image).await.expect_err("a corrupted file is refused");
    assert!(format!("{err:#}").to_lowercase().contains("mac"), "{err:#}");

    // Expired: 410 even after a fresh media_conn; the phone uploads it again on request.
    sim.inject(Fault::ExpireMedia { id: Some(id.clone()), reupload: true }).expect("expire");
    let err = client.client.download(&image).await.expect_err("expired");
    assert!(format!("{err:#}").contains("410"), "{err:#}");
    let key = image.media_key.clone().expect("key");
    let request =
        MediaReuploadRequest { msg_id: &id, chat_jid: &chat, media_key: &key, is_from_me: false, participant: None };
    let MediaRetryResult::Success { direct_path } =
        client.client.media_reupload().request(&request).await.expect("retry")
    else {
        panic!("the phone re-uploads the media");
    };
    assert_ne!(Some(direct_path.as_str()), image.direct_path.as_deref());
    let again = client.client.download(&params(&image, &direct_path)).await.expect("download after re-upload");
    assert_eq!(again, media.data);

    // A phone that no longer has it says so.
    sim.inject(Fault::ExpireMedia { id: Some(id.clone()), reupload: false }).expect("expire");
    let answer = client.client.media_reupload().request(&request).await.expect("retry answered");
    assert!(matches!(answer, MediaRetryResult::NotFound), "{answer:?}");
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_the_client_uploads_reaches_the_contact_intact() {
    init_logs();
    let sim = Sim::start().await.expect("sim");
    sim.add_phone(ME);
    sim.add_phone(CONTACT);
    let dir = tempfile::tempdir().expect("tempdir");
    let client = TestClient::linked(&sim, ME, &dir.path().join("session.db")).await;

    let data = b"%PDF-1.4 not really, but bytes all the same\n".repeat(500);
    let up = client
        .client
        .upload(data.clone(), MediaType::Document, Default::default())
        .await
        .expect("the CDN accepts an upload whose token is its SHA-256");
    let message = wa::Message {
        document_message: buffa::MessageField::some(wa::message::DocumentMessage {
            url: Some(up.url.clone()),
            direct_path: Some(up.direct_path.clone()),
            media_key: Some(up.media_key.to_vec()),
            file_sha256: Some(up.file_sha256.to_vec()),
            file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
            file_length: Some(up.file_length),
            mimetype: Some("application/pdf".into()),
            file_name: Some("report.pdf".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cursor = sim.cursor();
    let to: Jid = format!("{CONTACT}@s.whatsapp.net").parse().expect("jid");
    client.client.send_message(to, message).await.expect("send");
    let got = sim
        .wait_for(cursor, T, |e| matches!(e, SimEvent::MediaReceived { .. } | SimEvent::MediaRejected { .. }))
        .await
        .expect("the contact gets it");
    let SimEvent::MediaReceived { contact, media } = got else { panic!("refused: {got:?}") };
    assert_eq!(contact, CONTACT);
    assert_eq!((media.kind, media.file_name.as_deref(), media.data), (MediaKind::Document, Some("report.pdf"), data));
    client.stop().await;
}
