//! Issue 14: media in, end to end. A contact on wa-sim sends a voice note, a photo, documents;
//! the real gateway downloads them from wa-sim's CDN (WhatsApp's media crypto), transcribes
//! through an OpenAI-compatible server on 127.0.0.1, shows pictures to the model, inlines
//! text and PDFs, and says what went wrong when a download cannot be done.

use std::os::unix::fs::PermissionsExt as _;

use wa_sim::{Fault, Media, MediaKind};

use crate::pipeline::Setup;

const ACCOUNT: &str = "15550002000";
const FRIEND: &str = "4915100003333";

/// A linked gateway whose STT server is the loopback LLM's `/v1/audio/transcriptions`.
async fn setup(env: &str) -> Setup {
    let mut s = Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\n{env}")).await;
    // The STT server is on the same loopback server as the model.
    if !env.contains("STT_OPENAI_BASE_URL") && !env.contains("NO_STT") {
        s.stop();
        let mut lines = std::fs::read_to_string(s.home.path.join(".env")).expect(".env");
        lines.push_str(&format!("STT_OPENAI_BASE_URL={}\n", s.llm.base_url()));
        std::fs::write(s.home.path.join(".env"), lines).expect("write .env");
        s.start(&[]);
    }
    s.contact(FRIEND);
    s
}

fn voice(data: &[u8]) -> Media {
    Media { mime: "audio/ogg; codecs=opus".into(), data: data.to_vec(), seconds: Some(3), ..Default::default() }
}

fn document(name: &str, mime: &str, data: Vec<u8>) -> Media {
    Media { mime: mime.into(), data, file_name: Some(name.into()), ..Default::default() }
}

/// A one-page PDF whose page shows `text` in Helvetica, with a correct cross-reference table.
fn pdf(text: &str) -> Vec<u8> {
    let content = format!("BT /F1 24 Tf 72 720 Td ({text}) Tj ET");
    pdf_of(vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
    ])
}

/// Issue 25, hole 3: a PDF of 3 KB whose page draws a form 12 times, which draws the next
/// form 12 times, 12 deep: 12^12 draws, which kept the PDF reader busy for ever.
fn pdf_of_nested_forms() -> Vec<u8> {
    const DEPTH: usize = 12;
    let draws = |name: &str| format!("q /{name} Do Q ").repeat(12);
    let mut objects = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /XObject << /X0 6 0 R >> >> >>"
            .to_owned(),
        format!("<< /Length {} >>\nstream\n{}\nendstream", draws("X0").len(), draws("X0")),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
    ];
    for level in 0..DEPTH {
        let (content, resources) = if level + 1 < DEPTH {
            (draws(&format!("X{}", level + 1)), format!("/XObject << /X{} {} 0 R >>", level + 1, 7 + level))
        } else {
            ("BT /F1 12 Tf 72 720 Td (deep) Tj ET".to_owned(), "/Font << /F1 5 0 R >>".to_owned())
        };
        objects.push(format!(
            "<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << {resources} >> /Length {} >>\nstream\n\
             {content}\nendstream",
            content.len()
        ));
    }
    pdf_of(objects)
}

/// A PDF of `objects` (numbered from 1, the first the catalog) with a correct cross-reference
/// table.
fn pdf_of(objects: Vec<String>) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
    );
    out
}

/// The parser children (`hermes __parse`) running now.
fn parser_children() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == b"__parse"))
        })
        .collect()
}

/// Issue 25, hole 3: the PDF of nested forms pinned a core for ever; the chat's later messages
/// were never answered, a media slot stayed taken, and the gateway ignored SIGTERM. Now the
/// reader runs in a child with a CPU limit: the agent is told the PDF could not be read, the
/// chat goes on, and a stop does not wait for a child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdf_that_never_ends_costs_one_child_and_the_chat_goes_on() {
    let mut s = setup("").await;
    let bomb = document("forms.pdf", "application/pdf", pdf_of_nested_forms());
    assert!(bomb.data.len() < 5000, "a few KB: {}", bomb.data.len());
    // Limits shortened twentyfold (the reader gets 1 s of CPU), as the test clock allows.
    s.stop();
    s.start(&[("HERMES_TEST_TIME_SCALE", "0.05")]);
    let answer = s.media_answer(MediaKind::Document, &bomb, "forms.pdf").await;
    assert!(answer.contains("[The user sent a document: 'forms.pdf'"), "described, not read: {answer}");
    let later = s.ask(FRIEND, "are you still there?").await;
    assert!(later.contains("are you still there?"), "{later}");
    assert!(parser_children().is_empty(), "no child is left behind");

    // With the full limits, a stop in the middle of reading it ends the child and the gateway.
    s.stop();
    s.start(&[]);
    s.send_media(MediaKind::Document, &bomb).await;
    let deadline = std::time::Instant::now() + crate::gateway::T;
    while parser_children().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the PDF never reached a parser");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let gw = s.gw.take().expect("running");
    gw.terminate();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(gw.exit()));
    let (code, log) = rx.recv_timeout(crate::gateway::T).expect("the gateway stops without waiting for the reader");
    assert_eq!(code, 0, "{log}");
    let deadline = std::time::Instant::now() + crate::gateway::T;
    while !parser_children().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the reader was left running");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Issue 25, hole 4: a PNG of 514 KB took 838 MB to decode, in the gateway. A picture whose
/// header asks for more than a phone's photo is refused by the decoder's limits, in a child,
/// and the agent is told it was not shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_that_inflates_past_the_limits_is_not_shown_and_costs_the_gateway_nothing() {
    let s = setup("").await;
    // 60,000 x 60,000 pixels of RGBA (14 GB decoded) in a few hundred bytes: a valid header,
    // and one compressed row of nothing.
    let bomb = png_claiming(60_000, 60_000);
    let photo =
        Media { mime: "image/png".into(), data: bomb, caption: Some("what is this?".into()), ..Default::default() };
    let answer = s.media_answer(MediaKind::Image, &photo, "what is this?").await;
    assert!(answer.contains("cannot be shown to you here"), "the agent is told it was not shown: {answer}");
    let later = s.ask(FRIEND, "and this text?").await;
    assert!(later.contains("and this text?"), "{later}");
}

/// A PNG whose header says `width` x `height` RGBA, with a tiny (incomplete) image stream.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len()).expect("len").to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        // CRC-32 (reflected, 0xedb88320) over the kind and the data.
        let crc = !out[start..].iter().fold(!0u32, |crc, &b| {
            (0..8).fold(crc ^ u32::from(b), |c, _| if c & 1 != 0 { (c >> 1) ^ 0xedb8_8320 } else { c >> 1 })
        });
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = width.to_be_bytes().to_vec();
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &header);
    // A zlib stream of one empty stored block: no pixel data.
    chunk(&mut out, b"IDAT", &[0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A 1x1 red PNG.
pub(crate) const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49,
    0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xfc, 0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x05, 0x02, 0x00, 0x5f, 0xc8, 0xf1,
    0xd2, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

impl Setup {
    async fn send_media(&self, kind: MediaKind, media: &Media) -> String {
        self.sim.send_media(FRIEND, ACCOUNT, kind, media).await.expect("send media")
    }

    /// Sends media and waits for the answer that contains `needle`.
    async fn media_answer(&self, kind: MediaKind, media: &Media, needle: &str) -> String {
        let cursor = self.sim.cursor();
        self.send_media(kind, media).await;
        self.reply_containing(cursor, FRIEND, needle).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_note_is_transcribed_echoed_and_read_by_the_agent() {
    let s = setup("").await;
    let audio = b"OggS\0fake opus pages, as the phone recorded them".repeat(40);
    s.llm.next_transcript(Ok("book a table for two at eight"));
    let cursor = s.sim.cursor();
    s.send_media(MediaKind::Voice, &voice(&audio)).await;
    let echo = s.reply_containing(cursor, FRIEND, "🎙️").await;
    assert_eq!(echo, "🎙️ \"book a table for two at eight\"");
    let answer = s.reply_containing(cursor, FRIEND, "You wrote").await;
    assert!(
        answer.contains("[The user sent a voice message~ Here's what they said: \"book a table for two at eight\"]"),
        "{answer}"
    );
    // The server got the very bytes the contact recorded, as a file, with Hermes' default model.
    let t = s.llm.transcriptions();
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].audio.as_slice(), t[0].model.as_str(), t[0].mime.as_str()),
        (&audio[..], "whisper-1", "audio/ogg")
    );
    // Kept where Hermes keeps audio, readable by its owner only.
    let cached: Vec<_> = std::fs::read_dir(s.home.path.join("cache/audio")).expect("cache/audio").flatten().collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let name = cached[0].file_name().into_string().expect("utf-8");
    assert!(name.starts_with("aud_") && name.ends_with(".ogg"), "{name}");
    assert_eq!(cached[0].metadata().expect("meta").permissions().mode() & 0o777, 0o600);

    // STT down: the agent is told, nothing is invented, the log says why.
    s.llm.next_transcript(Err(503));
    let answer = s.media_answer(MediaKind::Voice, &voice(b"OggS second"), "You wrote").await;
    assert!(
        answer.contains("[voice message could not be transcribed automatically; the audio is available at: "),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_speech_to_text_the_sender_gets_one_honest_sentence() {
    let s = setup("NO_STT=1\n").await;
    let cursor = s.sim.cursor();
    s.send_media(MediaKind::Voice, &voice(b"OggS hello")).await;
    let sentence = s.reply_containing(cursor, FRIEND, "🎤").await;
    assert!(sentence.contains("no speech-to-text provider is configured"), "{sentence}");
    let answer = s.reply_containing(cursor, FRIEND, "You wrote").await;
    assert!(answer.contains("no STT provider is configured"), "{answer}");
    let log = s.gw.as_ref().expect("running").wait_log("cannot be transcribed");
    assert!(log.last().expect("line").contains("HERMES_LOCAL_STT_COMMAND"), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_reaches_the_model_as_an_image_and_a_text_only_model_reads_words_instead() {
    let s = setup("").await;
    let photo = Media {
        mime: "image/png".into(),
        data: PNG.to_vec(),
        caption: Some("what colour?".into()),
        ..Default::default()
    };
    let answer = s.media_answer(MediaKind::Image, &photo, "You wrote").await;
    assert!(answer.contains("[image received] what colour?"), "{answer}");
    let request = s.llm.requests().last().cloned().expect("a request");
    let user = request.last().expect("the user's message");
    use base64::Engine as _;
    let url = user.images.first().expect("an image part");
    let b64 = url.strip_prefix("data:image/png;base64,").expect("a PNG data URL");
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(b64).expect("base64"), PNG);

    // A model that refuses image parts is asked again without them.
    s.llm.refuse_images(true);
    let answer = s.media_answer(MediaKind::Image, &photo, "You wrote").await;
    assert!(answer.contains("it cannot be shown to you here") && answer.contains("what colour?"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_inlined_as_text_extracted_from_pdf_or_described() {
    let s = setup("").await;
    let notes = document("notes.md", "text/markdown", b"# Shopping\n- milk\n- bread\n".to_vec());
    s.media_answer(MediaKind::Document, &notes, "You wrote").await;
    // (What the model read: the reply itself is reformatted for WhatsApp.)
    let asked = s.llm.requests().last().and_then(|r| r.last().cloned()).expect("a request").content;
    assert!(asked.contains("[Content of notes.md]:\n# Shopping\n- milk"), "{asked}");
    assert!(asked.starts_with("[The user sent a text document: 'notes.md'."), "{asked}");

    let paper = document("invoice.pdf", "application/pdf", pdf("Total due 42 EUR"));
    let answer = s.media_answer(MediaKind::Document, &paper, "You wrote").await;
    assert!(answer.contains("[Content of invoice.pdf]:") && answer.contains("Total due 42 EUR"), "{answer}");

    let sheet =
        document("budget.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", vec![7; 2048]);
    let answer = s.media_answer(MediaKind::Document, &sheet, "You wrote").await;
    assert!(answer.contains("[The user sent a document: 'budget.xlsx'") && answer.contains("2.0 KB"), "{answer}");
    assert!(std::fs::read_dir(s.home.path.join("cache/documents")).expect("dir").count() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_media_is_fetched_again_and_what_cannot_be_fetched_is_said() {
    let mut s = setup("WHATSAPP_MAX_MEDIA_MB=1\n").await;
    // Sent while the gateway is down, then expired on the CDN before it comes back: the
    // sender's phone uploads it again when asked.
    s.stop();
    let notes = document("plan.txt", "text/plain", b"step one, step two".to_vec());
    let id = s.send_media(MediaKind::Document, &notes).await;
    s.sim.inject(Fault::ExpireMedia { id: Some(id), reupload: true }).expect("expire");
    let cursor = s.sim.cursor();
    s.start(&[]);
    let answer = s.reply_containing(cursor, FRIEND, "You wrote").await;
    assert!(answer.contains("[Content of plan.txt]:\nstep one, step two"), "{answer}");

    // Expired for good: the agent reads Hermes' words and answers anyway.
    s.stop();
    let id = s.send_media(MediaKind::Document, &document("gone.txt", "text/plain", b"x".to_vec())).await;
    s.sim.inject(Fault::ExpireMedia { id: Some(id), reupload: false }).expect("expire");
    let cursor = s.sim.cursor();
    s.start(&[]);
    let answer = s.reply_containing(cursor, FRIEND, "You wrote").await;
    assert!(answer.contains("[document could not be downloaded]"), "{answer}");

    // Damaged on the CDN: the MAC check refuses it.
    s.stop();
    let id = s.send_media(MediaKind::Document, &document("bad.txt", "text/plain", b"y".to_vec())).await;
    s.sim.inject(Fault::CorruptMedia { id: Some(id) }).expect("corrupt");
    let cursor = s.sim.cursor();
    s.start(&[]);
    let answer = s.reply_containing(cursor, FRIEND, "You wrote").await;
    assert!(answer.contains("[document could not be downloaded]"), "{answer}");
    let log = s.gw.as_ref().expect("running").wait_log("could not be downloaded");
    assert!(log.last().expect("line").contains("integrity"), "{log:?}");

    // Over WHATSAPP_MAX_MEDIA_MB: not downloaded at all, and the agent is told the size.
    let big = document("big.txt", "text/plain", vec![b'a'; 1_500_000]);
    let answer = s.media_answer(MediaKind::Document, &big, "You wrote").await;
    assert!(answer.contains("over this gateway's 1 MB limit"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_download_downloads_again_and_answers_once() {
    let mut s = setup("").await;
    s.stop();
    s.start(&[("HERMES_CRASH_AT", "media_downloaded")]);
    let notes = document("once.txt", "text/plain", b"only once".to_vec());
    s.send_media(MediaKind::Document, &notes).await;
    let (code, log) = s.gw.take().expect("running").exit();
    assert_eq!(code, -1, "killed after the download: {log}");
    let cursor = s.sim.cursor();
    s.start(&[]);
    let answer = s.reply_containing(cursor, FRIEND, "You wrote").await;
    assert!(answer.contains("[Content of once.txt]:\nonly once"), "{answer}");
    // Nothing half-written is left, and the document was answered once.
    let leftovers: Vec<_> = std::fs::read_dir(s.home.path.join("cache/documents"))
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    s.say(FRIEND, "flush").await;
    s.reply_containing(cursor, FRIEND, "flush").await;
    assert_eq!(s.replies(FRIEND).iter().filter(|r| r.contains("only once")).count(), 1);
}

/// The media `FRIEND` received from the gateway, waiting for the `n`th.
async fn received(s: &Setup, n: usize) -> Vec<wa_sim::ReceivedMedia> {
    let deadline = std::time::Instant::now() + crate::gateway::T;
    loop {
        let got = s.sim.received_media(FRIEND);
        if got.len() >= n {
            return got;
        }
        let rejected: Vec<_> =
            s.sim.events().into_iter().filter(|e| matches!(e, wa_sim::SimEvent::MediaRejected { .. })).collect();
        assert!(rejected.is_empty(), "the contact could not check media: {rejected:?}");
        assert!(std::time::Instant::now() < deadline, "no {n} media for {FRIEND}: {got:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_the_agent_attaches_are_sent_and_files_outside_the_allowed_places_are_not() {
    let s = setup("").await;
    let dir = s.home.path.join("cache/documents");
    std::fs::create_dir_all(&dir).expect("dir");
    let report = dir.join("report.pdf");
    std::fs::write(&report, pdf("Quarterly report")).expect("write");
    s.llm.answer_next(&format!("Here it is.\nMEDIA:{}", report.display()));
    let cursor = s.sim.cursor();
    s.say(FRIEND, "send me the report").await;
    assert_eq!(s.reply_containing(cursor, FRIEND, "Here it is").await, "Here it is.");
    let got = received(&s, 1).await;
    assert_eq!((got[0].kind, got[0].file_name.as_deref()), (MediaKind::Document, Some("report.pdf")));
    assert_eq!(got[0].data, std::fs::read(&report).expect("read"));

    // Outside HERMES_HOME/cache and HERMES_MEDIA_ALLOW_DIRS: not sent, and the reply says so.
    let outside = tempfile::tempdir().expect("tempdir");
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "do not send").expect("write");
    s.llm.answer_next(&format!("Done. MEDIA:{}", secret.display()));
    let cursor = s.sim.cursor();
    s.say(FRIEND, "and the other one").await;
    let reply = s.reply_containing(cursor, FRIEND, "Done.").await;
    assert!(reply.contains("(The file secret.txt could not be attached.)"), "{reply}");
    let log = s.gw.as_ref().expect("running").wait_log("not sent");
    assert!(log.last().expect("line").contains("HERMES_MEDIA_ALLOW_DIRS"), "{log:?}");
    assert_eq!(s.sim.received_media(FRIEND).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hermes_send_file_sends_an_image_with_its_caption_once_even_across_a_crash_after_the_upload() {
    let mut s = setup("").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let photo = dir.path().join("sunset.png");
    std::fs::write(&photo, PNG).expect("write");
    let to = format!("--to=whatsapp:{FRIEND}");
    let file = format!("--file={}", photo.display());
    let run = s.home.run(&["send", &to, &file, "--caption", "tonight"]);
    assert_eq!(run.code, 0, "{run:?}");
    let got = received(&s, 1).await;
    assert_eq!(
        (got[0].kind, got[0].caption.as_deref(), got[0].mime.as_str()),
        (MediaKind::Image, Some("tonight"), "image/png")
    );
    assert_eq!(got[0].data, PNG);
    assert_eq!(s.sim.media_uploads(), 1);
    // From /tmp, the file went through HERMES_HOME (a service's gateway has a /tmp of its
    // own), and the hand-over copy is gone.
    assert!(photo.starts_with("/tmp"), "{}", photo.display());
    let handed: Vec<_> = std::fs::read_dir(s.home.path.join("cache/outgoing"))
        .expect("outgoing")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".send-"))
        .collect();
    assert!(handed.is_empty(), "{handed:?}");

    // Killed right after the upload was kept: the restart sends it once, without uploading again.
    s.stop();
    s.start(&[("HERMES_CRASH_AT", "uploaded")]);
    let doc = dir.path().join("notes.txt");
    std::fs::write(&doc, "one upload").expect("write");
    let file = format!("--file={}", doc.display());
    let _ = s.home.run(&["send", &to, &file]);
    let (code, log) = s.gw.take().expect("running").exit();
    assert_eq!(code, -1, "killed after the upload: {log}");
    // The original may go: what is sent is the gateway's own copy.
    std::fs::remove_file(&doc).expect("remove");
    s.start(&[]);
    let got = received(&s, 2).await;
    assert_eq!((got[1].file_name.as_deref(), got[1].data.as_slice()), (Some("notes.txt"), &b"one upload"[..]));
    assert_eq!(s.sim.media_uploads(), 2, "uploaded once before the crash, not again after it");
    // The outbox goes in order: once the answer to a later message is in, a second copy would be too.
    let cursor = s.sim.cursor();
    s.say(FRIEND, "flush").await;
    s.reply_containing(cursor, FRIEND, "flush").await;
    assert_eq!(s.sim.received_media(FRIEND).len(), 2, "sent once");

    let bad = s.home.run(&["send", &to, "--file=relative/x.png"]);
    assert_ne!(bad.code, 0, "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_note_is_answered_by_voice_when_auto_tts_is_on() {
    let top = "voice:\n  auto_tts: true\ntts:\n  provider: openai\n  openai:\n    base_url: {llm}\nstt:\n  openai:\n    base_url: {llm}\n";
    let env = format!("WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS={FRIEND}\n");
    let mut s = Setup::with_top(ACCOUNT, &env, top, "").await;
    s.contact(FRIEND);
    s.llm.next_transcript(Ok("what time is it"));
    s.llm.answer_next("It is half past eight.");
    let cursor = s.sim.cursor();
    s.send_media(MediaKind::Voice, &voice(b"OggS question")).await;
    assert_eq!(s.reply_containing(cursor, FRIEND, "half past").await, "It is half past eight.");
    let got = received(&s, 1).await;
    let spoken = &got[0];
    assert_eq!(
        (spoken.kind, spoken.ptt, spoken.mime.as_str()),
        (MediaKind::Voice, Some(true), "audio/ogg; codecs=opus")
    );
    assert_eq!(spoken.seconds, Some(1), "22 packets of 20 ms");
    assert_eq!(spoken.waveform.as_ref().map(Vec::len), Some(64));
    assert_eq!(s.llm.spoken(), ["It is half past eight."]);
    s.stop();
}

fn protocol(
    kind: waproto::whatsapp::message::protocol_message::Type,
    of: &str,
    edit: Option<&str>,
) -> waproto::whatsapp::Message {
    use waproto::whatsapp as wa;
    wa::Message {
        protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
            key: buffa::MessageField::some(wa::MessageKey {
                remote_jid: Some(format!("{ACCOUNT}@s.whatsapp.net")),
                from_me: Some(true),
                id: Some(of.to_owned()),
                ..Default::default()
            }),
            r#type: Some(kind),
            edited_message: match edit {
                Some(text) => {
                    buffa::MessageField::some(wa::Message { conversation: Some(text.to_owned()), ..Default::default() })
                }
                None => buffa::MessageField::none(),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_before_the_answer_is_what_the_agent_reads_and_a_deleted_message_is_not_answered() {
    use waproto::whatsapp::message::protocol_message::Type;
    let mut s = setup("").await;
    s.stop();
    let typo = s.sim.send_text(FRIEND, ACCOUNT, "meet at the stattion", false).await.expect("send");
    s.sim
        .send_message(FRIEND, ACCOUNT, protocol(Type::MESSAGE_EDIT, &typo, Some("meet at the station")))
        .await
        .expect("edit");
    let oops = s.sim.send_text(FRIEND, ACCOUNT, "my PIN is 1234", false).await.expect("send");
    s.sim.send_message(FRIEND, ACCOUNT, protocol(Type::REVOKE, &oops, None)).await.expect("revoke");
    let cursor = s.sim.cursor();
    s.start(&[]);
    // Everything before it is answered once the flush is.
    s.say(FRIEND, "flush").await;
    s.reply_containing(cursor, FRIEND, "flush").await;
    let replies = s.replies(FRIEND);
    // The deleted message is never answered.
    assert!(replies.iter().all(|r| !r.contains("PIN")), "{replies:#?}");
    // The agent reads the edited text: as the message itself (the edit arrived before it was
    // asked, the usual case) or, when the question was already on its way, as a note after it.
    let asked: Vec<String> = s.llm.requests().iter().filter_map(|r| r.last().map(|m| m.content.clone())).collect();
    let direct = asked.iter().any(|t| t.contains("meet at the station") && !t.contains("now says"));
    let as_note = asked.iter().any(|t| t.contains("it now says: \"meet at the station\""));
    assert!(direct != as_note, "exactly one way: {asked:#?}");
    if direct {
        assert!(asked.iter().all(|t| !t.contains("stattion")), "{asked:#?}");
    }

    // Edited after it was answered: the agent is told what it says now.
    let cursor = s.sim.cursor();
    s.sim
        .send_message(FRIEND, ACCOUNT, protocol(Type::MESSAGE_EDIT, &typo, Some("meet at the old station")))
        .await
        .expect("edit");
    let answer = s.reply_containing(cursor, FRIEND, "edited an earlier message").await;
    assert!(answer.contains("it now says: \"meet at the old station\""), "{answer}");
}

/// Two seconds of a 16 kHz mono WAV: a tone, then silence.
fn tone_then_silence() -> Vec<u8> {
    let pcm: Vec<u8> = (0..32_000u32)
        .map(|i| {
            if i < 16_000 { ((i as f32 / 16_000.0 * 300.0 * std::f32::consts::TAU).sin() * 9_000.0) as i16 } else { 0 }
        })
        .flat_map(i16::to_le_bytes)
        .collect();
    let mut wav = Vec::new();
    for chunk in [&b"RIFF"[..], &(36 + pcm.len() as u32).to_le_bytes(), b"WAVEfmt ", &16u32.to_le_bytes()] {
        wav.extend_from_slice(chunk);
    }
    for field in [1u16, 1] {
        wav.extend_from_slice(&field.to_le_bytes());
    }
    for field in [16_000u32, 32_000] {
        wav.extend_from_slice(&field.to_le_bytes());
    }
    for field in [2u16, 16] {
        wav.extend_from_slice(&field.to_le_bytes());
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    wav.extend(pcm);
    wav
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wav_sent_as_a_voice_note_arrives_as_ogg_opus_with_its_length_and_waveform() {
    let s = setup("").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("reminder.wav");
    std::fs::write(&wav, tone_then_silence()).expect("write");
    let (to, file) = (format!("--to=whatsapp:{FRIEND}"), format!("--file={}", wav.display()));
    let run = s.home.run(&["send", &to, &file, "--voice"]);
    assert_eq!(run.code, 0, "{run:?}");
    let got = received(&s, 1).await;
    let note = &got[0];
    assert_eq!(
        (note.kind, note.ptt, note.mime.as_str(), note.seconds),
        (MediaKind::Voice, Some(true), "audio/ogg; codecs=opus", Some(2))
    );
    assert!(note.data.starts_with(b"OggS") && note.data.windows(8).any(|w| w == b"OpusHead"), "Ogg Opus");
    let wave = note.waveform.clone().expect("a waveform");
    assert!(wave[..28].iter().all(|b| *b > 40) && wave[36..].iter().all(|b| *b < 10), "tone then silence: {wave:?}");

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not audio").expect("write");
    let refused = s.home.run(&["send", &to, &format!("--file={}", text.display()), "--voice"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("--voice needs an audio file"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_deleted_while_the_agent_is_asked_is_not_answered_and_the_rest_of_its_batch_is() {
    use waproto::whatsapp::message::protocol_message::Type;
    let s = setup("").await;
    s.llm.hold(true);
    let before = s.llm.requests().len();
    let oops = s.sim.send_text(FRIEND, ACCOUNT, "my PIN is 1234", false).await.expect("send");
    s.sim.send_text(FRIEND, ACCOUNT, "and what about lunch", false).await.expect("send");
    // Both in one question (sent within the debounce), which the model is thinking about.
    assert!(s.llm.wait_for_requests(before + 1, crate::gateway::T).await, "asked");
    let cursor = s.sim.cursor();
    s.sim.send_message(FRIEND, ACCOUNT, protocol(Type::REVOKE, &oops, None)).await.expect("revoke");
    s.sim
        .wait_for(cursor, crate::gateway::T, |e| matches!(e, wa_sim::SimEvent::MessageDelivered { .. }))
        .await
        .expect("the delete is journaled");
    s.llm.hold(false);
    // The question with the deleted message is not answered; the other message is, alone.
    let answer = s.reply_containing(cursor, FRIEND, "lunch").await;
    assert!(!answer.contains("PIN"), "{answer}");
    assert!(s.replies(FRIEND).iter().all(|r| !r.contains("PIN")), "{:#?}", s.replies(FRIEND));
}

/// Issue 27: a reply to a voice note shows the agent what the voice note said (its transcript,
/// kept with the message), not an empty quote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_voice_note_quotes_its_transcript() {
    let s = setup("").await;
    s.llm.next_transcript(Ok("call the plumber at nine"));
    let cursor = s.sim.cursor();
    let note = s.send_media(MediaKind::Voice, &voice(&b"OggS\0a voice note".repeat(40))).await;
    s.reply_containing(cursor, FRIEND, "You wrote").await;
    let cursor = s.sim.cursor();
    s.sim.send_reply(FRIEND, ACCOUNT, "when was that?", &note, None).await.expect("reply");
    s.reply_containing(cursor, FRIEND, "when was that?").await;
    let asked = s.llm.requests().last().cloned().expect("asked");
    let user = asked.iter().rev().find(|m| m.role == hermes_agent::Speaker::User).expect("user");
    assert!(
        user.content.starts_with("[Replying to: \"") && user.content.contains("call the plumber at nine"),
        "{}",
        user.content
    );
    assert!(user.content.ends_with("\n\nwhen was that?"), "{}", user.content);
}

/// Issue 27: a reply to a photo shows the model the photo itself, beside the question.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_photo_shows_the_model_the_photo() {
    let s = setup("").await;
    let photo = Media { mime: "image/png".into(), data: PNG.to_vec(), ..Default::default() };
    let cursor = s.sim.cursor();
    let id = s.send_media(MediaKind::Image, &photo).await;
    s.reply_containing(cursor, FRIEND, "You wrote").await;
    let cursor = s.sim.cursor();
    s.sim.send_reply(FRIEND, ACCOUNT, "what colour is this?", &id, None).await.expect("reply");
    s.reply_containing(cursor, FRIEND, "what colour is this?").await;
    let asked = s.llm.requests().last().cloned().expect("asked");
    let user = asked.iter().rev().find(|m| m.role == hermes_agent::Speaker::User).expect("user");
    assert!(
        user.content.starts_with("[Replying to: \"") && user.content.ends_with("what colour is this?"),
        "{}",
        user.content
    );
    assert_eq!(user.images.len(), 1, "the quoted photo goes with the question");
    assert!(user.images[0].starts_with("data:image/png;base64,"), "{}", &user.images[0][..30]);
}
