//! The user-agent patterns of the `isbot` npm package (5.2.3, Unlicense; `data/isbot/`), run
//! with Rust's `regex` crate.
//!
//! The list is JavaScript regular expressions, tested case-insensitively. Rust's `regex` runs
//! them as they are but for six that use look-around, which it does not support: each of those is
//! rewritten here as a core pattern with the literal text that must not stand right before or
//! right after its match. A test runs every pattern of the list, rewritten or not, against the
//! original in JavaScript (node) on the crawler list and the browser fixtures.
//!
//! JavaScript's `\w`, `\d`, `\b` and case folding are ASCII-only, so the patterns run on bytes
//! with Unicode off, on the user agent as [`js_text`] gives it: lowered to ASCII lower case, and
//! each character beyond ASCII as one byte per UTF-16 code unit, since JavaScript counts
//! (`[^ ]{50,}`) in code units and its `\s` takes Unicode's spaces.

use std::sync::OnceLock;

use regex::bytes::{Regex, RegexBuilder};

/// `user_agent` as the patterns read it, the way JavaScript sees it: ASCII lowered; each of
/// JavaScript's white space characters beyond ASCII (what its `\s` matches) as a vertical tab
/// (white space to `\s`, not a space to `[^ ]`); any other character beyond ASCII as `0x80`,
/// once per UTF-16 code unit (neither a word character nor white space, one to `[^ ]`).
pub fn js_text(user_agent: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(user_agent.len());
    for c in user_agent.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase() as u8);
        } else if matches!(
            c,
            '\u{a0}' | '\u{1680}' | '\u{2000}'
                ..='\u{200a}'
                    | '\u{2028}'
                    | '\u{2029}'
                    | '\u{202f}'
                    | '\u{205f}'
                    | '\u{3000}'
                    | '\u{feff}'
        ) {
            out.push(0x0b);
        } else {
            out.extend(std::iter::repeat_n(0x80, c.len_utf16()));
        }
    }
    out
}

/// The pattern list, as the isbot package publishes it.
const LIST: &str = include_str!("../data/isbot/patterns.json");

/// A pattern with look-around, and how it runs without it.
struct Rewrite {
    /// The pattern as the list has it.
    original: &'static str,
    /// The pattern less its look-around.
    core: &'static str,
    /// Text that must not end right where the core's match begins (a negative look-behind).
    not_after: &'static [&'static str],
    /// Text that must not begin right where the core's match ends (a negative look-ahead).
    not_before: &'static [&'static str],
}

/// Every pattern of the list that uses look-around.
const REWRITES: &[Rewrite] = &[
    Rewrite {
        original: "(?:^|[^g])news(?!sapphire)",
        core: "(?:^|[^g])news",
        not_after: &[],
        not_before: &["sapphire"],
    },
    Rewrite {
        original: "(?<! channel/|google/)google(?!(?:wv|app|/google| pixel))",
        core: "google",
        not_after: &[" channel/", "google/"],
        not_before: &["wv", "app", "/google", " pixel"],
    },
    Rewrite {
        original: "(?<! cu)bots?(?:\\b|_)",
        core: "bots?(?:\\b|_)",
        not_after: &[" cu"],
        not_before: &[],
    },
    Rewrite {
        original: "(?<!cam)scan",
        core: "scan",
        not_after: &["cam"],
        not_before: &[],
    },
    Rewrite {
        original: "(?<!lib)http",
        core: "http",
        not_after: &["lib"],
        not_before: &[],
    },
    Rewrite {
        original: "java(?!;)",
        core: "java",
        not_after: &[],
        not_before: &[";"],
    },
];

/// One pattern of the list, ready to run.
pub struct Pattern {
    source: String,
    regex: Regex,
    rewrite: Option<&'static Rewrite>,
}

impl Pattern {
    /// The pattern as the list has it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether it matches `lowered`, a user agent as [`js_text`] gives it.
    pub fn is_match(&self, lowered: &[u8]) -> bool {
        let Some(rw) = self.rewrite else {
            return self.regex.is_match(lowered);
        };
        // Every start the core matches at, as a backtracking engine tries them; none of the
        // cores can match twice at one start with a different outcome of its look-around.
        let mut at = 0;
        while let Some(m) = self.regex.find_at(lowered, at) {
            let before = &lowered[..m.start()];
            let after = &lowered[m.end()..];
            if !rw.not_after.iter().any(|t| before.ends_with(t.as_bytes()))
                && !rw
                    .not_before
                    .iter()
                    .any(|t| after.starts_with(t.as_bytes()))
            {
                return true;
            }
            at = m.start() + 1;
            if at > lowered.len() {
                break;
            }
        }
        false
    }
}

/// The whole list: one regular expression of every pattern without look-around (what runs for
/// nearly every person), then the rewritten ones.
pub struct Patterns {
    plain: Regex,
    rewritten: Vec<Pattern>,
    each: Vec<Pattern>,
}

/// A JavaScript pattern in the syntax of Rust's `regex`, where the two differ for this list: in
/// a class, JavaScript takes a `-` after a class escape (`[\w-.]`) as itself, and `&&`, `--` and
/// `~~` have no meaning, where `regex` reads ranges and set operations. Each such character is
/// escaped.
fn rust_syntax(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    // Whether the last thing in the class was a class escape (`\w`, `\d`, `\s`…).
    let mut after_class_escape = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next().unwrap_or('\\');
                out.push('\\');
                out.push(next);
                after_class_escape = in_class && "wWdDsS".contains(next);
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                if chars.peek() == Some(&'^') {
                    out.push(chars.next().unwrap_or('^'));
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '-' if in_class && (after_class_escape || chars.peek() == Some(&']')) => {
                out.push_str("\\-");
            }
            '&' | '~' | '-' if in_class && chars.peek() == Some(&c) => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
        after_class_escape = false;
    }
    out
}

fn compile(pattern: &str) -> Regex {
    RegexBuilder::new(&rust_syntax(pattern))
        .unicode(false)
        .case_insensitive(true)
        .build()
        .unwrap_or_else(|e| panic!("the vendored isbot pattern {pattern:?} does not compile: {e}"))
}

impl Patterns {
    /// The vendored list, compiled once.
    pub fn get() -> &'static Patterns {
        static PATTERNS: OnceLock<Patterns> = OnceLock::new();
        PATTERNS.get_or_init(Patterns::new)
    }

    fn new() -> Patterns {
        let list: Vec<String> =
            serde_json::from_str(LIST).expect("the vendored isbot list is a JSON list of strings");
        let each: Vec<Pattern> = list
            .iter()
            .map(|source| {
                let rewrite = REWRITES.iter().find(|r| r.original == source);
                let looks_around =
                    source.contains("(?<") || source.contains("(?=") || source.contains("(?!");
                assert!(
                    rewrite.is_some() || !looks_around,
                    "the isbot pattern {source:?} looks around and has no rewrite"
                );
                Pattern {
                    source: source.clone(),
                    regex: compile(rewrite.map_or(source, |r| r.core)),
                    rewrite,
                }
            })
            .collect();
        let plain = list
            .iter()
            .filter(|s| !REWRITES.iter().any(|r| r.original == s.as_str()))
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("|");
        let rewritten = REWRITES
            .iter()
            .map(|r| Pattern {
                source: r.original.to_owned(),
                regex: compile(r.core),
                rewrite: Some(r),
            })
            .collect();
        Patterns {
            plain: compile(&plain),
            rewritten,
            each,
        }
    }

    /// Every pattern of the list, in its order.
    pub fn each(&self) -> &[Pattern] {
        &self.each
    }

    /// The first pattern of the list that matches `user_agent`, or `None` for a person's.
    pub fn matching(&self, user_agent: &str) -> Option<&str> {
        let lowered = js_text(user_agent);
        let lowered = lowered.as_slice();
        let hit =
            self.plain.is_match(lowered) || self.rewritten.iter().any(|p| p.is_match(lowered));
        if !hit {
            return None;
        }
        self.each
            .iter()
            .find(|p| p.is_match(lowered))
            .map(Pattern::source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn javascript_classes_are_read_as_javascript_reads_them() {
        assert_eq!(rust_syntax(r"[\w\d-.]+"), r"[\w\d\-.]+");
        assert_eq!(rust_syntax(r"[a-z][\w-]+"), r"[a-z][\w\-]+");
        assert_eq!(rust_syntax(r"[^ ]{50,}"), r"[^ ]{50,}");
        assert_eq!(rust_syntax(r"\[x-y]"), r"\[x-y]");
        assert!(compile(r"[\w\d-.]+").is_match(b"a-b.c"));
    }

    #[test]
    fn text_beyond_ascii_is_read_as_javascript_reads_it() {
        let p = Patterns::get();
        // JavaScript counts UTF-16 code units: 48 letters and an é are 49, under `[^ ]{50,}`.
        assert_eq!(p.matching(&format!("{}é", "a".repeat(48))), None);
        assert_eq!(p.matching(&"é".repeat(30)), None);
        assert!(p.matching(&"é".repeat(50)).is_some());
        assert!(
            p.matching(&"😀".repeat(25)).is_some(),
            "two code units each"
        );
        // JavaScript's `\s` takes Unicode's spaces.
        assert!(p.matching("foo/1.0\u{a0}(bar)").is_some());
        assert!(
            p.matching("Mozilla/5.0\u{3000}(compatible; foo/1.0)")
                .is_some()
        );
        assert_eq!(js_text("Aé😀\u{feff}"), b"a\x80\x80\x80\x0b");
    }

    #[test]
    fn every_pattern_compiles_and_every_look_around_is_rewritten() {
        let p = Patterns::get();
        assert!(p.each().len() > 200, "{}", p.each().len());
        for r in REWRITES {
            assert!(
                p.each().iter().any(|e| e.source() == r.original),
                "{:?} is no longer in the list: drop its rewrite",
                r.original
            );
        }
    }

    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

    #[test]
    fn the_rewrites_keep_their_exceptions() {
        let p = Patterns::get();
        // Each exception and its rule, after a person's Chrome (what JavaScript answers too).
        for (suffix, bot) in [
            ("", false),
            (" CamScanner/6.0", false),
            (" Scanner/6.0", true),
            (" mylib libhttp/2", false),
            (" myhttp/2", true),
            (" Java;", false),
            (" Java/1", true),
            (" gnews/1", false),
            (" newssapphire", false),
            (" News/1", true),
            (" Cubot", false),
            (" Robot", true),
            ("; wv) GoogleApp/1", false),
            (" (compatible; Googlebot/2.1)", true),
        ] {
            let ua = format!("{CHROME}{suffix}");
            assert_eq!(
                p.matching(&ua).is_some(),
                bot,
                "{ua}: {:?}",
                p.matching(&ua)
            );
        }
    }
}
