//! Deterministic hashing for holdouts and percentage rollouts.
//!
//! Deciding whether a visitor falls inside a holdout or a partial rollout has to give
//! the same answer every time the same visitor is seen, on every node, and after every
//! restart. A hash of a seed and the visitor's identifier gives exactly that without
//! storing anything: the assignment is a pure function of its inputs, so there is no
//! state to persist, replicate or lose.
//!
//! Rather than inventing a private scheme, this module implements GrowthBook's
//! published "version 2" hash (see `hash` in `packages/sdk-js/src/util.ts` of the
//! `growthbook/growthbook` repository). Because the algorithm and its test vectors are
//! public, anyone can check an individual assignment independently with a GrowthBook
//! SDK in any language, and the integration tests in this crate verify the
//! implementation against GrowthBook's own published vectors.
//!
//! The scheme works as follows. The core is 32-bit FNV-1a, applied to the UTF-16 code
//! units of a string (JavaScript's `charCodeAt`), not to its UTF-8 bytes. Version 2
//! hashes `seed + value`, formats that 32-bit result as a decimal string, hashes the
//! string again and keeps the remainder modulo 10 000. The second round is what makes
//! version 2 unbiased: version 1 kept `fnv(value + seed) % 1000` directly, and similar
//! inputs then produced correlated buckets. Version 1 is provided only so that every
//! published vector can be checked; new code should use version 2.

/// The 32-bit FNV offset basis, which is the hash state before any input is fed in.
const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;

/// The 32-bit FNV prime, by which the state is multiplied after each input unit.
const FNV_PRIME: u32 = 0x0100_0193;

/// The number of buckets in version 2, so that one bucket is one basis point.
const V2_BUCKETS: u32 = 10_000;

/// The number of buckets in version 1, which is kept only for the published vectors.
const V1_BUCKETS: u32 = 1_000;

/// Feeds one input unit into an FNV-1a state.
///
/// GrowthBook's JavaScript XORs a whole UTF-16 code unit (up to 16 bits) into the
/// state, so the unit is taken as a `u32` rather than a byte. Its multiplication is
/// written as a sum of shifts on JavaScript numbers, which equals a wrapping multiply
/// by the FNV prime modulo 2^32.
#[inline]
fn feed_unit(state: u32, unit: u32) -> u32 {
    (state ^ unit).wrapping_mul(FNV_PRIME)
}

/// Feeds every UTF-16 code unit of `s` into an FNV-1a state.
///
/// Hashing a concatenation is the same as feeding its parts one after the other,
/// so callers can hash `seed + value` without building the combined string.
#[inline]
fn feed_str(state: u32, s: &str) -> u32 {
    s.encode_utf16()
        .fold(state, |state, unit| feed_unit(state, u32::from(unit)))
}

/// Writes the decimal digits of `n` into `buf` and returns the slice that holds them.
///
/// This matches JavaScript's `n + ""` for a non-negative integer: no sign, no leading
/// zeros, and `"0"` for zero. Ten bytes are enough because `u32::MAX` has ten digits,
/// so the formatting never needs the heap.
fn decimal_digits(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        // The remainder is below ten, so the narrowing cast cannot lose information.
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[start..]
}

/// Returns the 32-bit FNV-1a hash of the UTF-16 code units of `s`.
///
/// This is GrowthBook's `hashFnv32a`. It differs from the usual byte-oriented FNV-1a
/// for any character outside ASCII, because the JavaScript original hashes what
/// `charCodeAt` returns: one 16-bit unit for characters in the Basic Multilingual
/// Plane and a surrogate pair for characters beyond it.
#[must_use]
pub fn fnv1a32(s: &str) -> u32 {
    feed_str(FNV_OFFSET_BASIS, s)
}

/// Returns the GrowthBook version 2 bucket of `value` under `seed`, in `0..10_000`.
///
/// The result is `fnv1a32(decimal(fnv1a32(seed + value))) % 10_000`. The seed and the
/// value are fed through the FNV state one after the other instead of being
/// concatenated, and the inner hash is formatted into a stack buffer, so the function
/// does not allocate.
#[must_use]
pub fn bucket_v2(seed: &str, value: &str) -> u32 {
    let inner = feed_str(feed_str(FNV_OFFSET_BASIS, seed), value);
    let mut buf = [0u8; 10];
    // Decimal digits are ASCII, and an ASCII character's UTF-16 code unit equals its
    // byte, so feeding the bytes gives the same result as hashing the string.
    let outer = decimal_digits(inner, &mut buf)
        .iter()
        .fold(FNV_OFFSET_BASIS, |state, &byte| {
            feed_unit(state, u32::from(byte))
        });
    outer % V2_BUCKETS
}

/// Returns GrowthBook's version 2 hash of `value` under `seed`, a number in `[0, 1)`.
///
/// This is `bucket_v2(seed, value) / 10_000`, which is what GrowthBook's
/// `hash(seed, value, 2)` returns. Both sides perform one correctly rounded division of
/// the same integer, so the results are bit-for-bit equal.
#[must_use]
pub fn hash_v2(seed: &str, value: &str) -> f64 {
    f64::from(bucket_v2(seed, value)) / f64::from(V2_BUCKETS)
}

/// Returns GrowthBook's version 1 hash of `value` under `seed`, a number in `[0, 1)`.
///
/// Version 1 is `fnv1a32(value + seed) % 1000 / 1000`. Note that the value comes
/// before the seed here, unlike in version 2. It is biased and coarse, and exists only
/// so that all of GrowthBook's published vectors can be checked against this module.
#[must_use]
pub fn hash_v1(seed: &str, value: &str) -> f64 {
    let hash = feed_str(feed_str(FNV_OFFSET_BASIS, value), seed);
    f64::from(hash % V1_BUCKETS) / f64::from(V1_BUCKETS)
}

/// Returns whether `value` falls inside a share of `share_basis_points` out of 10 000
/// under `seed`.
///
/// The share is given in basis points so that it can be compared with the bucket as
/// an integer, without floating-point rounding; 10% is 1 000. A share of zero admits
/// no one and a share of 10 000 or more admits everyone. The answer is the same as
/// GrowthBook's `inRange(hash(seed, value, 2), [0, share / 10000])`, so a rule written
/// in GrowthBook with that range selects the same visitors.
#[must_use]
pub fn in_share(seed: &str, value: &str, share_basis_points: u32) -> bool {
    bucket_v2(seed, value) < share_basis_points
}

/// 64-bit FNV-1a over the UTF-8 bytes of `s`.
///
/// This one is Beckon's own and is not part of any published scheme: the session keeps names it
/// only compares (tracked elements, custom event names, URL paths) as these hashes, which is
/// cheaper to store and to compare than the text. 64 bits make a collision between two names
/// of one site vanishingly unlikely.
pub fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes a sequence of units with plain FNV-1a, as an independent reference.
    fn fnv_over_units(units: impl IntoIterator<Item = u32>) -> u32 {
        let mut state = 0x811c_9dc5_u32;
        for unit in units {
            state ^= unit;
            state = state.wrapping_mul(16_777_619);
        }
        state
    }

    /// Computes the version 2 bucket the way the JavaScript reads, with allocations,
    /// so that the allocation-free version can be compared against it.
    fn bucket_v2_by_concatenation(seed: &str, value: &str) -> u32 {
        let inner = fnv1a32(&format!("{seed}{value}"));
        fnv1a32(&inner.to_string()) % 10_000
    }

    #[test]
    fn ascii_input_matches_the_standard_fnv1a_vectors() {
        // For ASCII, UTF-16 code units equal bytes, so the standard FNV-1a test
        // vectors from the FNV reference suite must hold unchanged.
        assert_eq!(fnv1a32(""), 0x811c_9dc5);
        assert_eq!(fnv1a32("a"), 0xe40c_292c);
        assert_eq!(fnv1a32("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn astral_plane_characters_are_hashed_as_surrogate_pairs() {
        // U+1F600 is the surrogate pair D83D DE00 in UTF-16 but the four bytes
        // F0 9F 98 80 in UTF-8. GrowthBook hashes the former.
        let s = "😀";
        let over_utf16 = fnv_over_units([0xD83D, 0xDE00]);
        let over_utf8 = fnv_over_units(s.bytes().map(u32::from));
        assert_eq!(fnv1a32(s), over_utf16);
        assert_ne!(fnv1a32(s), over_utf8);
    }

    #[test]
    fn latin1_characters_are_hashed_as_one_unit() {
        // U+00E9 is the single unit 0x00E9 in UTF-16 but the two bytes C3 A9 in UTF-8.
        let s = "é";
        assert_eq!(fnv1a32(s), fnv_over_units([0xE9]));
        assert_ne!(fnv1a32(s), fnv_over_units(s.bytes().map(u32::from)));
    }

    #[test]
    fn decimal_digits_match_the_standard_formatting() {
        for n in [0, 7, 9, 10, 99, 100, 1_000_000_007, u32::MAX - 1, u32::MAX] {
            let mut buf = [0u8; 10];
            assert_eq!(decimal_digits(n, &mut buf), n.to_string().as_bytes());
        }
    }

    #[test]
    fn streaming_bucket_matches_the_concatenating_reference() {
        let inputs = ["", "a", "seed", "site:salt", "v12345", "é", "😀", "日本語"];
        for seed in inputs {
            for value in inputs {
                assert_eq!(
                    bucket_v2(seed, value),
                    bucket_v2_by_concatenation(seed, value),
                    "seed {seed:?}, value {value:?}"
                );
            }
        }
    }

    #[test]
    fn share_boundaries_admit_no_one_and_everyone() {
        for value in ["a", "b", "v1", "v2", "😀"] {
            assert!(!in_share("seed", value, 0));
            assert!(in_share("seed", value, 10_000));
            assert!(in_share("seed", value, u32::MAX));
        }
    }

    #[test]
    fn share_is_the_bucket_compared_with_the_basis_points() {
        // GrowthBook's published vector puts ("seed", "a") at 0.0505, bucket 505.
        assert_eq!(bucket_v2("seed", "a"), 505);
        assert!(!in_share("seed", "a", 505));
        assert!(in_share("seed", "a", 506));
    }
}
