//! JSON text written by hand for the two things made once per event: a record's line and the
//! array its id is hashed from. The output is byte for byte what `serde_json` writes for the
//! same values (the tests compare them), made faster by skipping clean runs of a string
//! sixteen bytes at a time instead of looking each byte up in a table.

/// Whether `byte` must be escaped in a JSON string as serde_json writes one: `"`, `\` and
/// the control characters. Everything else, non-ASCII and DEL included, is written as it is.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Whether any byte of `chunk` needs escaping, counted without branches so that the
/// compiler can compare all sixteen bytes at once.
fn chunk_needs_escape(chunk: &[u8; 16]) -> bool {
    chunk
        .iter()
        .fold(0u8, |any, &b| any | u8::from(needs_escape(b)))
        != 0
}

/// The escape of one byte that [`needs_escape`]: the short forms JSON has, `\u00XX` (with
/// lowercase hex, as serde_json writes it) for the other control characters.
fn push_escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match byte {
        b'"' => b'"',
        b'\\' => b'\\',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        0x08 => b'b',
        0x0c => b'f',
        _ => {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0x0f)],
            ]);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

/// Appends `text` (the bytes of a `str`) as a quoted, escaped JSON string.
pub(crate) fn push_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `clean` is where the run of bytes not yet copied starts.
    let mut clean = 0;
    let mut chunks = bytes.chunks_exact(16);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let chunk: &[u8; 16] = chunk.try_into().expect("chunks_exact gives 16 bytes");
        if chunk_needs_escape(chunk) {
            escape_run(out, bytes, &mut clean, at, at + 16);
        }
        at += 16;
    }
    escape_run(out, bytes, &mut clean, at, bytes.len());
    out.extend_from_slice(&bytes[clean..]);
    out.push(b'"');
}

/// Escapes the bytes of `bytes[from..to]` that need it, copying the clean run before each.
fn escape_run(out: &mut Vec<u8>, bytes: &[u8], clean: &mut usize, from: usize, to: usize) {
    for (i, &byte) in bytes[from..to].iter().enumerate() {
        if needs_escape(byte) {
            let at = from + i;
            out.extend_from_slice(&bytes[*clean..at]);
            push_escape(out, byte);
            *clean = at + 1;
        }
    }
}

/// The length of `text` as [`push_str`] writes it, counted without writing it.
pub(crate) fn str_len(bytes: &[u8]) -> usize {
    let mut chunks = bytes.chunks_exact(16);
    let mut escaped = false;
    for chunk in chunks.by_ref() {
        let chunk: &[u8; 16] = chunk.try_into().expect("chunks_exact gives 16 bytes");
        escaped |= chunk_needs_escape(chunk);
    }
    escaped |= chunks.remainder().iter().any(|&b| needs_escape(b));
    if !escaped {
        return bytes.len() + 2;
    }
    2 + bytes
        .iter()
        .map(|&b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Appends `n` in decimal.
pub(crate) fn push_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The length of `n` in decimal, with its sign.
pub(crate) fn int_len(n: i64) -> usize {
    let sign = usize::from(n < 0);
    let mut rest = n.unsigned_abs();
    let mut digits = 1;
    while rest >= 10 {
        rest /= 10;
        digits += 1;
    }
    sign + digits
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings that exercise every branch: each escape at each offset of a chunk, clean
    /// chunks before and after, non-ASCII split across chunk boundaries.
    fn samples() -> Vec<String> {
        let mut texts: Vec<String> = [
            "",
            "a",
            "start to deploy service",
            "quote \" and \\ and \n \r \t \u{8} \u{c}",
            "control \u{0} \u{1} \u{1f} and \u{7f}",
            "slash / and unicode é 日本 \u{2028} 🙂",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for special in ["\"", "\\", "\n", "\u{0}", "\u{1b}", "é", "🙂"] {
            for at in 0..40 {
                texts.push(format!(
                    "{}{special}{}",
                    "x".repeat(at),
                    "y".repeat(40 - at)
                ));
            }
        }
        texts.push("\"".repeat(33));
        texts.push("\u{1}".repeat(17));
        texts
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for text in samples() {
            let mut out = b"prefix".to_vec();
            push_str(&mut out, text.as_bytes());
            let expected = serde_json::to_string(&text).expect("a string serializes");
            assert_eq!(&out[6..], expected.as_bytes(), "{text:?}");
            assert_eq!(str_len(text.as_bytes()), expected.len(), "{text:?}");
        }
    }

    #[test]
    fn integers_are_written_with_their_length() {
        for n in [0, 7, -5, 10, 99, 100, 1562597251764, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            push_int(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(int_len(n), out.len());
        }
    }
}
