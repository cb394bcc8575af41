//! What a voice note needs besides its bytes: its length and a waveform for the bubble, read
//! from an Ogg Opus file's pages without decoding the audio.
//!
//! The length is exact: the last page's granule position (48 kHz samples, always, for Opus)
//! less the pre-skip in the `OpusHead`. The waveform is an estimate: Opus is variable-bitrate,
//! so a packet's size follows how much is going on in those 20 ms (silence codes to a few
//! bytes). 64 bars of average packet size, scaled to 0-100, give the shape of speech and
//! pauses, which is what the bubble shows.

/// An Ogg Opus stream's packets (headers left out) and what its header and last page say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpusStream {
    pub pre_skip: u64,
    /// 48 kHz samples up to the end of the last page, before the pre-skip is taken off.
    pub last_granule: u64,
    pub packets: Vec<Vec<u8>>,
}

impl OpusStream {
    /// The length in seconds, rounded up (at least 1).
    pub fn seconds(&self) -> u32 {
        u32::try_from(self.last_granule.saturating_sub(self.pre_skip).div_ceil(48_000)).unwrap_or(u32::MAX).max(1)
    }

    /// 64 waveform bars estimated from packet sizes, without decoding (for the sound itself,
    /// decode it: see the gateway's `voice`).
    pub fn size_waveform(&self) -> Vec<u8> {
        let sizes: Vec<f64> = self.packets.iter().map(|p| p.len() as f64).collect();
        bars(&sizes, 64)
    }
}

/// Reads an Ogg Opus file; `None` if it is not one, or is cut short.
pub fn read_opus(file: &[u8]) -> Option<OpusStream> {
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let (mut last_granule, mut pre_skip, mut index) = (0u64, 0u64, 0usize);
    let mut at = 0usize;
    while at + 27 <= file.len() {
        if &file[at..at + 4] != b"OggS" {
            return None;
        }
        let granule = u64::from_le_bytes(file[at + 6..at + 14].try_into().ok()?);
        let count = usize::from(file[at + 26]);
        let table = file.get(at + 27..at + 27 + count)?;
        let mut body = at + 27 + count;
        for &lace in table {
            current.extend_from_slice(file.get(body..body + usize::from(lace))?);
            body += usize::from(lace);
            if lace < 255 {
                let packet = std::mem::take(&mut current);
                match index {
                    // `OpusHead`: its pre-skip is at bytes 10-11.
                    0 if packet.len() >= 12 && packet.starts_with(b"OpusHead") => {
                        pre_skip = u64::from(u16::from_le_bytes([packet[10], packet[11]]));
                    }
                    0 => return None,
                    1 => {} // `OpusTags`
                    _ => packets.push(packet),
                }
                index += 1;
            }
        }
        if granule != u64::MAX {
            last_granule = granule;
        }
        at = body;
    }
    (index >= 2 && !packets.is_empty()).then_some(OpusStream { pre_skip, last_granule, packets })
}

/// An Ogg Opus file of mono 48 kHz packets of 20 ms: `OpusHead`, `OpusTags`, then the packets,
/// 50 to a page, with correct granule positions and page checksums.
pub fn write_opus(packets: &[Vec<u8>], pre_skip: u16, vendor: &str) -> Vec<u8> {
    let serial: u32 = 0x6865_726d; // "herm"
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(1); // channels
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&[0, 0, 0]); // gain, mapping family
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&u32::try_from(vendor.len()).unwrap_or(0).to_le_bytes());
    tags.extend_from_slice(vendor.as_bytes());
    tags.extend_from_slice(&0u32.to_le_bytes());
    let mut out = page(serial, 0, 0, 2, &[head]);
    out.extend(page(serial, 1, 0, 0, &[tags]));
    // 50 packets of 20 ms to a page; fewer when large packets would need more than the 255
    // lacing values a page holds.
    let mut chunks: Vec<&[Vec<u8>]> = Vec::new();
    let mut rest = packets;
    while !rest.is_empty() {
        let (mut n, mut lacing) = (0, 0);
        while n < rest.len().min(50) && lacing + rest[n].len() / 255 < 255 {
            lacing += rest[n].len() / 255 + 1;
            n += 1;
        }
        let n = n.max(1);
        chunks.push(&rest[..n]);
        rest = &rest[n..];
    }
    let mut done = 0u64;
    for (i, chunk) in chunks.iter().enumerate() {
        done += chunk.len() as u64;
        let flags = if i + 1 == chunks.len() { 4 } else { 0 };
        out.extend(page(
            serial,
            u32::try_from(i + 2).unwrap_or(u32::MAX),
            u64::from(pre_skip) + done * 960,
            flags,
            chunk,
        ));
    }
    out
}

fn page(serial: u32, seq: u32, granule: u64, flags: u8, packets: &[Vec<u8>]) -> Vec<u8> {
    let (mut table, mut body) = (Vec::new(), Vec::new());
    for p in packets {
        table.extend(std::iter::repeat_n(255u8, p.len() / 255));
        table.push((p.len() % 255) as u8);
        body.extend_from_slice(p);
    }
    let mut page = b"OggS\0".to_vec();
    page.push(flags);
    page.extend_from_slice(&granule.to_le_bytes());
    page.extend_from_slice(&serial.to_le_bytes());
    page.extend_from_slice(&seq.to_le_bytes());
    page.extend_from_slice(&[0; 4]);
    page.push(u8::try_from(table.len()).unwrap_or(u8::MAX));
    page.extend_from_slice(&table);
    page.extend_from_slice(&body);
    // Ogg's CRC-32 (polynomial 0x04c11db7, no reflection), over the page with its field zeroed.
    let crc = page.iter().fold(0u32, |crc, &b| {
        (0..8)
            .fold(crc ^ (u32::from(b) << 24), |c, _| if c & 0x8000_0000 != 0 { (c << 1) ^ 0x04c1_1db7 } else { c << 1 })
    });
    page[22..26].copy_from_slice(&crc.to_le_bytes());
    page
}

/// `n` bars: the average of each slice of `values`, scaled so the largest is 100.
pub fn bars(values: &[f64], n: usize) -> Vec<u8> {
    if values.is_empty() {
        return vec![0; n];
    }
    let avg: Vec<f64> = (0..n)
        .map(|i| {
            let (from, to) = (i * values.len() / n, ((i + 1) * values.len() / n).max(i * values.len() / n + 1));
            let slice = &values[from.min(values.len() - 1)..to.min(values.len())];
            slice.iter().sum::<f64>() / slice.len().max(1) as f64
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
        let stream = read_opus(&file).expect("ogg opus");
        let (seconds, wave) = (stream.seconds(), stream.size_waveform());
        assert_eq!(seconds, 3);
        assert_eq!(wave.len(), 64);
        assert_eq!((wave[0], wave[32], wave[63]), (100, 1, 100));
        assert!(read_opus(b"ID3 an mp3").is_none());
        assert!(read_opus(&page(0, &[b"not opus".to_vec()])).is_none());
        assert!(read_opus(&file[..file.len() - 10]).is_none(), "a truncated file is not guessed at");
    }

    #[test]
    fn what_is_written_reads_back() {
        let packets: Vec<Vec<u8>> = (0..120).map(|i| vec![i as u8; 10 + (i * 37) % 1200]).collect();
        let file = write_opus(&packets, 312, "hermes");
        let stream = read_opus(&file).expect("reads back");
        assert_eq!((stream.pre_skip, stream.packets.len(), stream.seconds()), (312, 120, 3));
        assert_eq!(stream.packets, packets);
        assert_eq!(stream.last_granule, 312 + 120 * 960);
    }
}
