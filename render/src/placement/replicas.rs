//! Replica division: Webster/Sainte-Laguë seats with exact integer comparison.

/// Hands out `seats` one at a time to the entry with the largest `w/(2s+1)`; ties go to the entry
/// holding fewer seats, then to the smaller name. `entries` are `(name, weight)` with weight ≥ 0.
/// Returns seats in the order of `entries`.
pub fn webster(entries: &[(&str, i64)], seats: i64) -> Vec<i64> {
    let mut s = vec![0i64; entries.len()];
    if entries.is_empty() || seats <= 0 {
        return s;
    }
    for _ in 0..seats {
        let mut best: Option<usize> = None;
        for (i, (name, w)) in entries.iter().enumerate() {
            if *w <= 0 {
                continue;
            }
            let Some(b) = best else {
                best = Some(i);
                continue;
            };
            let (bname, bw) = entries[b];
            // Compare w/(2s+1) against bw/(2sb+1) exactly: w*(2sb+1) vs bw*(2s+1).
            let lhs = i128::from(*w) * i128::from(2 * s[b] + 1);
            let rhs = i128::from(bw) * i128::from(2 * s[i] + 1);
            let better = lhs > rhs || (lhs == rhs && (s[i] < s[b] || (s[i] == s[b] && *name < bname)));
            if better {
                best = Some(i);
            }
        }
        match best {
            Some(b) => s[b] += 1,
            None => break,
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn karmada_examples() {
        assert_eq!(webster(&[("a", 3), ("b", 2), ("c", 1)], 14), vec![7, 5, 2]);
        assert_eq!(webster(&[("a", 2), ("b", 1)], 2), vec![1, 1]);
        assert_eq!(webster(&[("a", 3), ("b", 2), ("c", 1)], 10), vec![5, 3, 2]);
    }

    #[test]
    fn ties_go_to_fewer_seats_then_smaller_name() {
        assert_eq!(webster(&[("b", 1), ("a", 1)], 1), vec![0, 1]);
        assert_eq!(webster(&[("b", 1), ("a", 1), ("c", 1)], 2), vec![1, 1, 0]);
    }

    #[test]
    fn zero_weights_get_nothing() {
        assert_eq!(webster(&[("a", 0), ("b", 5)], 3), vec![0, 3]);
        assert_eq!(webster(&[("a", 0)], 3), vec![0]);
    }
}
