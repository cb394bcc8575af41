//! What a voice note needs besides its bytes: its length and a waveform for the bubble, read
//! from an Ogg Opus file's pages without decoding the audio.
//!
//! The length is exact: the last page's granule position (48 kHz samples, always, for Opus)
//! less the pre-skip in the `OpusHead`. The waveform is an estimate: Opus is variable-bitrate,
//! so a packet's size follows how much is going on in those 20 ms (silence codes to a few
//! bytes). 64 bars of average packet size, scaled to 0-100, give the shape of speech and
//! pauses, which is what the bubble shows.

/// Length in seconds (rounded up) and 64 waveform bars, or `None` if this is not Ogg Opus.
pub fn voice_facts(file: &[u8]) -> Option<(u32, Vec<u8>)> {
    let mut packets: Vec<usize> = Vec::new();
    let mut current = 0usize;
    let mut last_granule = 0u64;
    let mut pre_skip = 0u64;
    let mut seen_head = false;
    let mut at = 0usize;
    let mut index = 0usize;
    while at + 27 <= file.len() {
        if &file[at..at + 4] != b"OggS" {
            return None;
        }
        let granule = u64::from_le_bytes(file[at + 6..at + 14].try_into().ok()?);
        let count = usize::from(file[at + 26]);
        let table = file.get(at + 27..at + 27 + count)?;
        let mut body = at + 27 + count;
        for &lace in table {
            let segment = file.get(body..body + usize::from(lace))?;
            if index == 0 && !seen_head {
                // The first packet is `OpusHead`; its pre-skip is at bytes 10-11.
                if segment.len() >= 12 && &segment[..8] == b"OpusHead" {
                    pre_skip = u64::from(u16::from_le_bytes([segment[10], segment[11]]));
                    seen_head = true;
                } else if current == 0 && segment.len() >= 8 && &segment[..8] != b"OpusHead" {
                    return None;
                }
            }
            current += usize::from(lace);
            body += usize::from(lace);
            if lace < 255 {
                // The first two packets are the headers (OpusHead, OpusTags).
                if index >= 2 {
                    packets.push(current);
                }
                index += 1;
                current = 0;
            }
        }
        if granule != u64::MAX {
            last_granule = granule;
        }
        at = body;
    }
    if !seen_head || packets.is_empty() {
        return None;
    }
    let samples = last_granule.saturating_sub(pre_skip);
    let seconds = u32::try_from(samples.div_ceil(48_000)).unwrap_or(u32::MAX).max(1);
    Some((seconds, bars(&packets, 64)))
}

/// `n` bars: the average of each slice of `sizes`, scaled so the largest is 100.
fn bars(sizes: &[usize], n: usize) -> Vec<u8> {
    let avg: Vec<f64> = (0..n)
        .map(|i| {
            let (from, to) = (i * sizes.len() / n, ((i + 1) * sizes.len() / n).max(i * sizes.len() / n + 1));
            let slice = &sizes[from.min(sizes.len() - 1)..to.min(sizes.len())];
            slice.iter().sum::<usize>() as f64 / slice.len().max(1) as f64
        })
        .collect();
    let max = avg.iter().copied().fold(0.0, f64::max);
    avg.iter().map(|a| if max > 0.0 { (a / max * 100.0).round() as u8 } else { 0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ogg page carrying whole packets.
    fn page(granule: u64, packets: &[Vec<u8>]) -> Vec<u8> {
        let mut table = Vec::new();
        let mut body = Vec::new();
        for p in packets {
            let mut left = p.len();
            while left >= 255 {
                table.push(255);
                left -= 255;
            }
            table.push(left as u8);
            body.extend_from_slice(p);
        }
        let mut out = b"OggS".to_vec();
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&granule.to_le_bytes());
        out.extend_from_slice(&[0; 12]);
        out.push(table.len() as u8);
        out.extend_from_slice(&table);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn length_and_shape_come_from_the_pages() {
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, 1, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]); // pre-skip 312
        let mut file = page(0, &[head]);
        file.extend(page(0, &[b"OpusTags\0\0\0\0".to_vec()]));
        // 2.5 s: loud, silent, loud; one large packet spans two lacing values.
        let loud: Vec<Vec<u8>> = (0..40).map(|_| vec![9; 300]).collect();
        let quiet: Vec<Vec<u8>> = (0..45).map(|_| vec![1; 3]).collect();
        file.extend(page(40 * 960, &loud));
        file.extend(page(85 * 960, &quiet));
        file.extend(page(125 * 960 + 312, &loud));
        let (seconds, wave) = voice_facts(&file).expect("ogg opus");
        assert_eq!(seconds, 3);
        assert_eq!(wave.len(), 64);
        assert_eq!((wave[0], wave[32], wave[63]), (100, 1, 100));
        assert!(voice_facts(b"ID3 an mp3").is_none());
        assert!(voice_facts(&page(0, &[b"not opus".to_vec()])).is_none());
        assert!(voice_facts(&file[..file.len() - 10]).is_none(), "a truncated file is not guessed at");
    }
}
