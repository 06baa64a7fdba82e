//! Small helpers shared by the command-line tools of this crate.

/// A number, with `_` or `,` separators allowed (`200_000`) and `0x` for hexadecimal seeds.
pub fn parse_u64(s: &str) -> Option<u64> {
    let s: String = s.chars().filter(|c| !matches!(c, '_' | ',')).collect();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `1234567` as `1,234,567`, for tables people read.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_and_print_with_separators() {
        assert_eq!(parse_u64("200_000"), Some(200_000));
        assert_eq!(parse_u64("0x10"), Some(16));
        assert_eq!(parse_u64("x"), None);
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(999), "999");
    }
}
