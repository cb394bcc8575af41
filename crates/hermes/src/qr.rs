//! Showing a QR code: in the terminal, or as a PNG file for a headless machine.

use std::path::Path;

use anyhow::Context as _;
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

/// The code as terminal text, two modules per character, with a quiet zone.
pub fn terminal(data: &str) -> anyhow::Result<String> {
    let code = QrCode::new(data.as_bytes()).context("encode QR code")?;
    Ok(code.render::<Dense1x2>().dark_color(Dense1x2::Light).light_color(Dense1x2::Dark).build())
}

/// Writes the code as a black-on-white PNG (8 pixels per module, 4-module quiet zone), via a
/// atomic write so a viewer never sees half a file.
pub fn write_png(data: &str, path: &Path) -> anyhow::Result<()> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let code = QrCode::new(data.as_bytes()).context("encode QR code")?;
    let width = code.width();
    let colors = code.to_colors();
    let size = (width + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; size * size];
    for (i, c) in colors.iter().enumerate() {
        if *c == qrcode::Color::Dark {
            let (x, y) = ((i % width + QUIET) * SCALE, (i / width + QUIET) * SCALE);
            for dy in 0..SCALE {
                pixels[(y + dy) * size + x..(y + dy) * size + x + SCALE].fill(0);
            }
        }
    }
    let size = u32::try_from(size).context("QR code too large")?;
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, size, size);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&pixels)?;
    hermes_store::files::write_private(path, &bytes).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}
