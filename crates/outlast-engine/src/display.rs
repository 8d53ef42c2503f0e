//! Object names as they may be shown on a terminal or in line-based output. A name is any
//! UTF-8 text, so one holding a newline could fake rows of `ls`, and one holding an escape
//! sequence could colour or rewrite the terminal; JSON output escapes them itself.

use std::borrow::Cow;

/// `name` with control characters (C0, DEL, C1) and bidirectional overrides written as Rust
/// escapes (`\n`, `\u{1b}`), so one name is one line and shows what it holds. A name with
/// none of them is shown as it is; in one with some, backslashes are doubled too, so the
/// escaped form reads back unambiguously.
pub fn escaped(name: &str) -> Cow<'_, str> {
    if !name.chars().any(needs_escape) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Characters that change how the text around them is shown.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

#[cfg(test)]
mod tests {
    use super::escaped;

    #[test]
    fn plain_names_are_shown_as_they_are() {
        assert!(matches!(escaped("photos/2024/ä b\\c.jpg"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn newlines_escapes_and_overrides_are_written_out() {
        assert_eq!(escaped("a\nb"), "a\\nb");
        assert_eq!(escaped("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escaped("x\u{202e}gpj.exe"), "x\\u{202e}gpj.exe");
        assert_eq!(escaped("\\\n"), "\\\\\\n");
        assert_eq!(escaped("\u{85}"), "\\u{85}");
    }
}
