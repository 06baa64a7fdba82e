//! Files in a conversation: what may be sent (a few image types, PDF and plain text, at most
//! [`MAX_FILE_BYTES`]), checked by their content, never by the name or the type the sender
//! claims. SVG and HTML are refused outright: they can carry script.

use crate::desk::DeskError;

/// The largest file a conversation takes.
pub const MAX_FILE_BYTES: usize = 5 * 1024 * 1024;
/// The longest file name kept.
const MAX_NAME_CHARS: usize = 100;

/// The types a file may be, as its content says.
pub const ALLOWED: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
];

/// A checked file: its cleaned name and its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The name, without any path, control characters or quotes, at most 100 characters.
    pub name: String,
    /// The type its content shows.
    pub mime: &'static str,
}

/// Checks a file before it is stored.
pub fn check(name: &str, bytes: &[u8]) -> Result<Checked, DeskError> {
    if bytes.is_empty() {
        return Err(DeskError::Invalid("the file is empty".to_owned()));
    }
    if bytes.len() > MAX_FILE_BYTES {
        return Err(DeskError::Invalid(format!(
            "a file may be at most {} MiB; this one is {:.1} MiB",
            MAX_FILE_BYTES / (1024 * 1024),
            bytes.len() as f64 / (1024.0 * 1024.0)
        )));
    }
    let mime = match infer::get(bytes).map(|t| t.mime_type()) {
        Some(m) => ALLOWED.iter().copied().find(|a| *a == m).ok_or_else(|| {
            DeskError::Invalid(format!(
                "files of type {m} are not accepted; send an image (PNG, JPEG, GIF, WebP), a PDF or plain text"
            ))
        })?,
        None if is_plain_text(bytes) => "text/plain",
        None => {
            return Err(DeskError::Invalid(
                "this kind of file is not accepted; send an image (PNG, JPEG, GIF, WebP), a PDF or plain text"
                    .to_owned(),
            ));
        }
    };
    Ok(Checked {
        name: clean_name(name),
        mime,
    })
}

/// The response headers a stored file is served with, so that no browser runs it: its checked
/// type, `nosniff`, a sandbox that allows nothing, private caching, no referrer, and anything
/// but an image as a download (with an ASCII name).
pub fn served_headers(name: &str, mime: &str) -> Vec<(&'static str, String)> {
    let inline = mime.starts_with("image/");
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    vec![
        ("content-type", mime.to_owned()),
        (
            "content-disposition",
            format!(
                "{}; filename=\"{ascii}\"",
                if inline { "inline" } else { "attachment" }
            ),
        ),
        ("x-content-type-options", "nosniff".to_owned()),
        (
            "content-security-policy",
            "default-src 'none'; sandbox".to_owned(),
        ),
        ("cache-control", "private, max-age=3600".to_owned()),
        ("referrer-policy", "no-referrer".to_owned()),
    ]
}

/// UTF-8 without NUL, and not markup a browser would run.
fn is_plain_text(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let head = text
        .trim_start()
        .get(..64.min(text.trim_start().len()))
        .unwrap_or("")
        .to_ascii_lowercase();
    !text.contains('\0')
        && !head.starts_with("<!doctype")
        && !head.starts_with("<html")
        && !head.starts_with("<svg")
        && !head.starts_with("<?xml")
        && !head.starts_with("<script")
}

fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | '\\'))
        .take(MAX_NAME_CHARS)
        .collect();
    let clean = clean.trim().trim_start_matches('.').to_owned();
    if clean.is_empty() {
        "file".to_owned()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = &[
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R',
    ];

    #[test]
    fn files_are_judged_by_their_content() {
        assert_eq!(check("photo.png", PNG).unwrap().mime, "image/png");
        assert_eq!(
            check("notes.exe", PNG).unwrap().mime,
            "image/png",
            "the content decides, not the name"
        );
        assert_eq!(
            check("a.txt", b"order 1042, size 43").unwrap().mime,
            "text/plain"
        );
        assert!(check("pdf.pdf", b"%PDF-1.7\n...").unwrap().mime == "application/pdf");
        for (name, bytes) in [
            (
                "x.png",
                &b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"[..],
            ),
            ("x.html", &b"<!DOCTYPE html><script>alert(1)</script>"[..]),
            ("x.exe", &b"MZ\x90\x00\x03\x00\x00\x00\x04\x00"[..]),
            ("x.zip", &b"PK\x03\x04\x14\x00\x00\x00"[..]),
            ("x.bin", &[0u8, 159, 146, 150][..]),
        ] {
            let e = check(name, bytes).unwrap_err().to_string();
            assert!(e.contains("not accepted"), "{name}: {e}");
        }
        assert!(check("e", b"").is_err());
        let big = vec![b'a'; MAX_FILE_BYTES + 1];
        assert!(
            check("big.txt", &big)
                .unwrap_err()
                .to_string()
                .contains("at most 5 MiB")
        );
    }

    #[test]
    fn names_lose_paths_controls_and_quotes() {
        assert_eq!(check("../../etc/passwd", b"x").unwrap().name, "passwd");
        assert_eq!(
            check("C:\\\\Users\\\\me\\\\a\"b<c>.txt", b"x")
                .unwrap()
                .name,
            "abc.txt"
        );
        assert_eq!(check("\u{7}\n", b"x").unwrap().name, "file");
        assert_eq!(check(".hidden", b"x").unwrap().name, "hidden");
        assert_eq!(check(&"n".repeat(300), b"x").unwrap().name.len(), 100);
    }
}
