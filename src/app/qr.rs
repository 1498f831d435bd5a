//! A QR code drawn with text characters (two modules per character cell,
//! `▀ ▄ █`), for `wgroam invite` on a terminal or with `--qr`. The encoder is
//! the `qrcodegen` crate (Nayuki's reference implementation, no dependencies):
//! Reed-Solomon, masking and version selection are easy to get subtly wrong,
//! and it costs the mips build a few KB.

use qrcodegen::{QrCode, QrCodeEcc};

/// The code for `data` (byte mode, low error correction), with a quiet zone
/// of two modules. Empty when the data does not fit (never for an invite).
pub fn render(data: &[u8]) -> String {
    let Ok(qr) = QrCode::encode_binary(data, QrCodeEcc::Low) else {
        return String::new();
    };
    let size = qr.size();
    let quiet = 2;
    // Dark modules are drawn light-on-dark terminals' way round: a set
    // module is a space, so the code reads on a dark background; most
    // scanners accept both.
    let dark = |x: i32, y: i32| qr.get_module(x, y);
    let mut out = String::new();
    let mut y = -quiet;
    while y < size + quiet {
        for x in -quiet..size + quiet {
            let top = dark(x, y);
            let bottom = dark(x, y + 1);
            out.push(match (top, bottom) {
                (false, false) => '█',
                (true, false) => '▄',
                (false, true) => '▀',
                (true, true) => ' ',
            });
        }
        out.push('\n');
        y += 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invite_fits_a_small_code() {
        let line = "wgroam1:".to_string() + &"A".repeat(192);
        let s = render(line.as_bytes());
        let rows: Vec<&str> = s.lines().collect();
        // Version 10 at most: 57 modules + 4 quiet.
        assert!(rows[0].chars().count() <= 61, "{}", rows[0].chars().count());
        assert!(
            rows.iter()
                .all(|r| r.chars().count() == rows[0].chars().count())
        );
        // The finder pattern's top-left corner is dark: drawn as a space row segment.
        assert!(rows[1].chars().nth(2) == Some(' ') || rows[1].chars().nth(2) == Some('▄'));
    }
}
