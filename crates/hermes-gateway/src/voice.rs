//! Voice notes out: WhatsApp plays a voice note only as Ogg Opus (mono, 48 kHz), with its
//! length and a waveform of 64 bars. An Ogg Opus file is kept as it is and decoded for its
//! waveform; MP3, WAV, FLAC, AAC/M4A and Ogg Vorbis are decoded (symphonia), mixed to mono,
//! resampled to 48 kHz and encoded (opus-rs, pure Rust: no ffmpeg, no C library).

use std::path::Path;

use hermes_core::media::ogg;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// 20 ms at 48 kHz.
const FRAME: usize = 960;
/// A voice note's bitrate: speech, mono.
const BITRATE: i32 = 32_000;
/// The encoder's look-ahead, taken off the start by the player (RFC 7845's usual value).
const PRE_SKIP: u16 = 312;
/// Longer audio is not made a voice note: it is decoded whole, so this bounds the samples kept
/// (15 minutes at 48 kHz, 173 MB as `f32`), whatever rate the file claims.
const MAX_SECONDS: usize = 15 * 60;
/// The most samples kept at once, at the file's rate or at 48 kHz.
const MAX_SAMPLES: usize = MAX_SECONDS * 48_000;
/// An Ogg Opus stream with more packets than 15 minutes of Opus' shortest frames (2.5 ms) is
/// not a voice note: it is encoded again from what symphonia decodes, within [`MAX_SAMPLES`].
const MAX_PACKETS: usize = MAX_SECONDS * 400;

/// A voice note ready to upload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VoiceNote {
    /// The Ogg Opus file, when it was encoded here (else the file is sent as it is).
    #[serde(with = "base64_bytes")]
    pub(crate) ogg: Vec<u8>,
    pub(crate) seconds: u32,
    pub(crate) waveform: Vec<u8>,
    /// It was encoded here (not sent as the file was).
    pub(crate) transcoded: bool,
}

/// A voice note's bytes travel from the parser as base64, a third larger, not as a JSON array
/// of numbers, four times larger.
mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// The voice note for an audio file; the error names the format when it cannot be read. Run
/// in a parser child (`crate::parse`): the file may be anyone's.
pub(crate) fn voice_note(path: &Path) -> Result<VoiceNote, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if let Some(stream) = ogg::read_opus(&bytes).filter(|s| s.packets.len() <= MAX_PACKETS) {
        let waveform = decoded_waveform(&stream.packets).unwrap_or_else(|| stream.size_waveform());
        return Ok(VoiceNote { seconds: stream.seconds(), ogg: bytes, waveform, transcoded: false });
    }
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let pcm = decode(bytes, ext.as_deref())?;
    encode(&pcm)
}

/// Mono samples at 48 kHz from any file symphonia reads.
fn decode(bytes: Vec<u8>, ext: Option<&str>) -> Result<Vec<f32>, String> {
    let mut hint = Hint::new();
    if let Some(ext) = ext {
        hint.with_extension(ext);
    }
    let source = MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes)), Default::default());
    let probed = symphonia::default::get_probe()
        .format(&hint, source, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| format!("not an audio format hermes reads (MP3, WAV, FLAC, AAC/M4A, Ogg Opus or Vorbis): {e}"))?;
    let mut format = probed.format;
    let track = format.default_track().ok_or("the file has no audio track")?;
    let (track_id, params) = (track.id, track.codec_params.clone());
    let rate = params
        .sample_rate
        .filter(|r| (1_000..=384_000).contains(r))
        .ok_or("the audio's sample rate is missing or not one audio uses")?;
    // Kept at the file's rate, then resampled to 48 kHz: both stay within MAX_SAMPLES.
    let limit = (MAX_SECONDS * rate as usize).min(MAX_SAMPLES);
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| format!("cannot decode this audio: {e}"))?;
    let mut mono = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(symphonia::core::errors::Error::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("cannot read the audio: {e}")),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A damaged frame is skipped, as players do.
            Err(symphonia::core::errors::Error::DecodeError(_)) => continue,
            Err(e) => return Err(format!("cannot decode the audio: {e}")),
        };
        let channels = decoded.spec().channels.count().max(1);
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, *decoded.spec());
        buf.copy_interleaved_ref(decoded);
        mono.extend(buf.samples().chunks(channels).map(|frame| frame.iter().sum::<f32>() / channels as f32));
        if mono.len() > limit {
            return Err(format!("the audio is longer than {} minutes; send it as an audio file", MAX_SECONDS / 60));
        }
    }
    if mono.is_empty() {
        return Err("the audio is empty".to_owned());
    }
    Ok(resample(&mono, rate, 48_000))
}

/// Linear resampling: enough for speech going to a 32 kbit/s voice codec.
fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to {
        return input.to_vec();
    }
    let ratio = f64::from(from) / f64::from(to);
    let n = (input.len() as f64 / ratio).floor() as usize;
    (0..n)
        .map(|i| {
            let at = i as f64 * ratio;
            let (k, frac) = (at.floor() as usize, (at - at.floor()) as f32);
            let a = input[k.min(input.len() - 1)];
            let b = input[(k + 1).min(input.len() - 1)];
            a + (b - a) * frac
        })
        .collect()
}

fn encode(pcm: &[f32]) -> Result<VoiceNote, String> {
    let mut encoder = opus_rs::OpusEncoder::new(48_000, 1, opus_rs::Application::Voip)?;
    encoder.bitrate_bps = BITRATE;
    let mut packets = Vec::with_capacity(pcm.len() / FRAME + 1);
    let mut out = vec![0u8; 1500];
    for frame in pcm.chunks(FRAME) {
        let mut padded;
        let frame = if frame.len() < FRAME {
            padded = frame.to_vec();
            padded.resize(FRAME, 0.0);
            &padded[..]
        } else {
            frame
        };
        let n = encoder.encode(frame, FRAME, &mut out)?;
        packets.push(out[..n].to_vec());
    }
    let seconds = u32::try_from(pcm.len().div_ceil(48_000)).unwrap_or(u32::MAX).max(1);
    let ogg = ogg::write_opus(&packets, PRE_SKIP, concat!("hermes ", env!("CARGO_PKG_VERSION")));
    Ok(VoiceNote { ogg, seconds, waveform: waveform(pcm), transcoded: true })
}

/// The sound decoded again, for a waveform of what is heard. Only each packet's loudness is
/// kept, never the samples: the memory follows the packets in the file, not the length its
/// packets claim (a 1.3 MB file of one-byte packets once reserved 2.4 GB of samples here).
fn decoded_waveform(packets: &[Vec<u8>]) -> Option<Vec<u8>> {
    let mut decoder = opus_rs::OpusDecoder::new(48_000, 1).ok()?;
    let mut buf = vec![0f32; FRAME * 6];
    // (sum of squares, samples) per packet.
    let mut loudness: Vec<(f64, usize)> = Vec::with_capacity(packets.len());
    for p in packets {
        let n = decoder.decode(p, buf.len(), &mut buf).ok()?.min(buf.len());
        loudness.push((buf[..n].iter().map(|s| f64::from(*s) * f64::from(*s)).sum(), n));
    }
    let total: usize = loudness.iter().map(|(_, n)| n).sum();
    let per = total.div_ceil(64).max(1);
    let mut bins = vec![(0.0f64, 0usize); 64];
    let mut at = 0usize;
    for (energy, n) in loudness {
        let bin = &mut bins[(at / per).min(63)];
        (bin.0, bin.1) = (bin.0 + energy, bin.1 + n);
        at += n;
    }
    let rms: Vec<f64> = bins.iter().map(|(e, n)| if *n == 0 { 0.0 } else { (e / *n as f64).sqrt() }).collect();
    Some(ogg::bars(&rms, 64))
}

/// 64 bars of loudness (RMS), the loudest 100.
fn waveform(pcm: &[f32]) -> Vec<u8> {
    let per = pcm.len().div_ceil(64).max(1);
    let rms: Vec<f64> = pcm
        .chunks(per)
        .map(|c| (c.iter().map(|s| f64::from(*s) * f64::from(*s)).sum::<f64>() / c.len() as f64).sqrt())
        .collect();
    ogg::bars(&rms, 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAV file of a tone that sounds for `loud` seconds, then is silent for as long.
    fn wav(rate: u32, loud: f32) -> Vec<u8> {
        let n = (rate as f32 * loud * 2.0) as usize;
        let samples: Vec<i16> = (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                if t < loud { ((t * 440.0 * std::f32::consts::TAU).sin() * 12_000.0) as i16 } else { 0 }
            })
            .collect();
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * 2).to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn a_wav_becomes_an_ogg_opus_voice_note_whose_waveform_follows_the_sound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("reply.wav");
        std::fs::write(&path, wav(16_000, 1.5)).expect("write");
        let note = voice_note(&path).expect("transcoded");
        assert!(note.transcoded);
        assert_eq!(note.seconds, 3);
        let stream = ogg::read_opus(&note.ogg).expect("Ogg Opus");
        assert_eq!(stream.packets.len(), 150, "3 s of 20 ms packets");
        // Loud first half, silent second half; and the same shape when decoded again.
        assert!(note.waveform[..30].iter().all(|b| *b > 50), "{:?}", note.waveform);
        assert!(note.waveform[34..].iter().all(|b| *b < 5), "{:?}", note.waveform);
        let again =
            std::fs::write(dir.path().join("again.ogg"), &note.ogg).map(|()| voice_note(&dir.path().join("again.ogg")));
        let again = again.expect("written").expect("read");
        assert!(!again.transcoded, "Ogg Opus goes as it is");
        assert!(
            again.waveform[..28].iter().all(|b| *b > 40) && again.waveform[36..].iter().all(|b| *b < 10),
            "{:?}",
            again.waveform
        );
    }

    /// Issue 25, hole 5: a 1.3 MB Ogg Opus file of one-byte packets made the waveform reserve
    /// 2.4 GB (packets times a frame of samples). Its memory is now each packet's loudness
    /// (`hostile::a_voice_note_of_tiny_packets_...` measures the process end to end); a stream
    /// of more packets than a voice note has is never sent as it is.
    #[test]
    fn an_ogg_of_more_packets_than_a_voice_note_has_is_not_sent_as_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("many.ogg");
        let many: Vec<Vec<u8>> = (0..MAX_PACKETS + 1).map(|_| vec![0xf8]).collect();
        std::fs::write(&path, ogg::write_opus(&many, PRE_SKIP, "test")).expect("write");
        assert!(voice_note(&path).is_err(), "too many packets: not passed on, and symphonia reads no Opus");
        let few: Vec<Vec<u8>> = (0..2_000).map(|_| vec![0xf8]).collect();
        let waveform = decoded_waveform(&few).expect("waveform of silence");
        assert_eq!(waveform, vec![0; 64]);
    }

    #[test]
    fn what_is_not_audio_is_refused_with_the_formats_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notes.mp3");
        std::fs::write(&path, b"this is text, not audio").expect("write");
        let err = voice_note(&path).expect_err("refused");
        assert!(err.contains("MP3, WAV, FLAC"), "{err}");
    }
}
