//! go-yaml v2's mapping key order (`keyList.Less`), which Karmada's YAML output follows.

/// Sorts with [`go_key_less`] by insertion sort: go-yaml v2's order is not guaranteed to be a total order
/// for unusual keys, and `slice::sort_by` may panic on such comparators; insertion sort never does.
pub(crate) fn sort_keys(keys: &mut [&String]) {
    for i in 1..keys.len() {
        let mut j = i;
        while j > 0 && go_key_less(keys[j], keys[j - 1]) {
            keys.swap(j, j - 1);
            j -= 1;
        }
    }
}

/// Go's `unicode.IsDigit`, approximated (`char::is_numeric` also accepts a few non-decimal numerals).
fn is_digit(c: char) -> bool {
    c.is_numeric()
}

/// Go's `rune - '0'`, wrapping like Go's integer arithmetic.
fn digit_value(c: char) -> i64 {
    i64::from(u32::from(c)) - i64::from(u32::from('0'))
}

/// go-yaml v2's `keyList.Less` for two string keys: runes compared one by one; two letters compare by code
/// point; a letter against a non-letter puts the non-letter first, except right after a digit, where the
/// letter comes first; runs of digits compare by numeric value, then by length.
pub(crate) fn go_key_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut digits = false;
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        let (ca, cb) = (ar[i], br[i]);
        if ca == cb {
            digits = is_digit(ca);
            i += 1;
            continue;
        }
        let (al, bl) = (ca.is_alphabetic(), cb.is_alphabetic());
        if al && bl {
            return ca < cb;
        }
        if al || bl {
            return if digits { al } else { bl };
        }
        let (mut an, mut bn): (i64, i64) = (0, 0);
        if ca == '0' || cb == '0' {
            let mut j = i;
            while j > 0 && is_digit(ar[j - 1]) {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && is_digit(ar[ai]) {
            an = an.wrapping_mul(10).wrapping_add(digit_value(ar[ai]));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && is_digit(br[bi]) {
            bn = bn.wrapping_mul(10).wrapping_add(digit_value(br[bi]));
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ca < cb;
    }
    ar.len() < br.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn sorted(keys: &[&str]) -> Vec<String> {
        let owned: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let mut refs: Vec<&String> = owned.iter().collect();
        sort_keys(&mut refs);
        refs.into_iter().cloned().collect()
    }

    #[test]
    fn go_yaml_v2_key_order() {
        assert_eq!(sorted(&["b", "a", "c"]), ["a", "b", "c"]);
        assert_eq!(sorted(&["a10", "a2", "a1"]), ["a1", "a2", "a10"]);
        assert_eq!(sorted(&["B", "a", "A"]), ["A", "B", "a"]);
        assert_eq!(sorted(&["ab", "a", "abc"]), ["a", "ab", "abc"]);
        assert_eq!(sorted(&["port", "host", "db", "name"]), ["db", "host", "name", "port"]);
        // A non-letter sorts before a letter (unlike byte order), except right after a digit.
        assert_eq!(sorted(&["ab", "a~"]), ["a~", "ab"]);
        assert_eq!(sorted(&["1_", "1b"]), ["1b", "1_"]);
        // Digit runs by value, then by length.
        assert_eq!(sorted(&["x10", "x9", "x009"]), ["x9", "x009", "x10"]);
    }

    #[test]
    fn odd_keys_never_panic() {
        let keys = [
            "",
            "0",
            "00",
            "a0",
            "a00",
            "٣",
            "½",
            "Ⅻ",
            "9999999999999999999999",
            "a1b",
            "a01b",
            "-",
            "~",
        ];
        let s = sorted(&keys);
        assert_eq!(s.len(), keys.len());
    }
}
