//! Go's `sort.Sort` as influxd 1.6.7's build (Go 1.19) runs it: a
//! pattern-defeating quicksort that is not stable. Where influxd picks a
//! point after sorting by value (`percentile()`), which of several equal
//! values it picks depends on this algorithm's exact swaps, so tsnode runs
//! the same one: insertion sort up to 12 elements, heapsort after too many
//! unbalanced partitions, Tukey's ninther for pivots past 50, the same
//! pattern breaking with the same xorshift.

/// Sorts `v` by `less` exactly as Go 1.19's `sort.Sort` would order it.
pub(super) fn go_sort<T>(v: &mut [T], less: &dyn Fn(&T, &T) -> bool) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let limit = bit_len(n);
    let mut d = Data { v, less };
    pdqsort(&mut d, 0, n, limit);
}

struct Data<'a, T> {
    v: &'a mut [T],
    less: &'a dyn Fn(&T, &T) -> bool,
}

impl<T> Data<'_, T> {
    fn less(&self, i: usize, j: usize) -> bool {
        (self.less)(&self.v[i], &self.v[j])
    }

    fn swap(&mut self, i: usize, j: usize) {
        self.v.swap(i, j);
    }
}

/// Bits needed to write `n` (Go's `bits.Len`).
fn bit_len(n: usize) -> usize {
    (usize::BITS - n.leading_zeros()) as usize
}

#[derive(PartialEq, Clone, Copy)]
enum Hint {
    Unknown,
    Increasing,
    Decreasing,
}

fn insertion_sort<T>(d: &mut Data<'_, T>, a: usize, b: usize) {
    for i in a + 1..b {
        let mut j = i;
        while j > a && d.less(j, j - 1) {
            d.swap(j, j - 1);
            j -= 1;
        }
    }
}

fn sift_down<T>(d: &mut Data<'_, T>, lo: usize, hi: usize, first: usize) {
    let mut root = lo;
    loop {
        let mut child = 2 * root + 1;
        if child >= hi {
            return;
        }
        if child + 1 < hi && d.less(first + child, first + child + 1) {
            child += 1;
        }
        if !d.less(first + root, first + child) {
            return;
        }
        d.swap(first + root, first + child);
        root = child;
    }
}

fn heap_sort<T>(d: &mut Data<'_, T>, a: usize, b: usize) {
    let (first, hi) = (a, b - a);
    let mut i = (hi - 1) / 2;
    loop {
        sift_down(d, i, hi, first);
        if i == 0 {
            break;
        }
        i -= 1;
    }
    for i in (0..hi).rev() {
        d.swap(first, first + i);
        sift_down(d, 0, i, first);
    }
}

fn pdqsort<T>(d: &mut Data<'_, T>, mut a: usize, mut b: usize, mut limit: usize) {
    const MAX_INSERTION: usize = 12;
    let (mut was_balanced, mut was_partitioned) = (true, true);
    loop {
        let length = b - a;
        if length <= MAX_INSERTION {
            insertion_sort(d, a, b);
            return;
        }
        if limit == 0 {
            heap_sort(d, a, b);
            return;
        }
        if !was_balanced {
            break_patterns(d, a, b);
            limit -= 1;
        }
        let (mut pivot, mut hint) = choose_pivot(d, a, b);
        if hint == Hint::Decreasing {
            reverse_range(d, a, b);
            pivot = (b - 1) - (pivot - a);
            hint = Hint::Increasing;
        }
        if was_balanced
            && was_partitioned
            && hint == Hint::Increasing
            && partial_insertion_sort(d, a, b)
        {
            return;
        }
        if a > 0 && !d.less(a - 1, pivot) {
            a = partition_equal(d, a, b, pivot);
            continue;
        }
        let (mid, already) = partition(d, a, b, pivot);
        was_partitioned = already;
        let (left, right) = (mid - a, b - mid);
        let threshold = length / 8;
        if left < right {
            was_balanced = left >= threshold;
            pdqsort(d, a, mid, limit);
            a = mid + 1;
        } else {
            was_balanced = right >= threshold;
            pdqsort(d, mid + 1, b, limit);
            b = mid;
        }
    }
}

fn partition<T>(d: &mut Data<'_, T>, a: usize, b: usize, pivot: usize) -> (usize, bool) {
    d.swap(a, pivot);
    // i and j as Go's signed ints.
    let (mut i, mut j) = (a as isize + 1, b as isize - 1);
    let at = |x: isize| x as usize;
    // Already partitioned if the first pass finds nothing to swap.
    let mut untouched = true;
    loop {
        while i <= j && d.less(at(i), a) {
            i += 1;
        }
        while i <= j && !d.less(at(j), a) {
            j -= 1;
        }
        if i > j {
            d.swap(at(j), a);
            return (at(j), untouched);
        }
        d.swap(at(i), at(j));
        i += 1;
        j -= 1;
        untouched = false;
    }
}

fn partition_equal<T>(d: &mut Data<'_, T>, a: usize, b: usize, pivot: usize) -> usize {
    d.swap(a, pivot);
    let (mut i, mut j) = (a as isize + 1, b as isize - 1);
    let at = |x: isize| x as usize;
    loop {
        while i <= j && !d.less(a, at(i)) {
            i += 1;
        }
        while i <= j && d.less(a, at(j)) {
            j -= 1;
        }
        if i > j {
            break;
        }
        d.swap(at(i), at(j));
        i += 1;
        j -= 1;
    }
    at(i)
}

fn partial_insertion_sort<T>(d: &mut Data<'_, T>, a: usize, b: usize) -> bool {
    const MAX_STEPS: usize = 5;
    const SHORTEST_SHIFTING: usize = 50;
    let mut i = a + 1;
    for _ in 0..MAX_STEPS {
        while i < b && !d.less(i, i - 1) {
            i += 1;
        }
        if i == b {
            return true;
        }
        if b - a < SHORTEST_SHIFTING {
            return false;
        }
        d.swap(i, i - 1);
        if i - a >= 2 {
            let mut j = i - 1;
            while j >= 1 {
                if !d.less(j, j - 1) {
                    break;
                }
                d.swap(j, j - 1);
                j -= 1;
            }
        }
        if b - i >= 2 {
            for j in i + 1..b {
                if !d.less(j, j - 1) {
                    break;
                }
                d.swap(j, j - 1);
            }
        }
    }
    false
}

fn break_patterns<T>(d: &mut Data<'_, T>, a: usize, b: usize) {
    let length = b - a;
    if length >= 8 {
        let mut random = length as u64;
        let modulus = 1usize << bit_len(length);
        let mid = a + (length / 4) * 2;
        for idx in mid - 1..=mid + 1 {
            random ^= random << 13;
            random ^= random >> 17;
            random ^= random << 5;
            let mut other = (random as usize) & (modulus - 1);
            if other >= length {
                other -= length;
            }
            d.swap(idx, a + other);
        }
    }
}

fn choose_pivot<T>(d: &mut Data<'_, T>, a: usize, b: usize) -> (usize, Hint) {
    const SHORTEST_NINTHER: usize = 50;
    const MAX_SWAPS: usize = 4 * 3;
    let l = b - a;
    let mut swaps = 0;
    let (mut i, mut j, mut k) = (a + l / 4, a + l / 4 * 2, a + l / 4 * 3);
    if l >= 8 {
        if l >= SHORTEST_NINTHER {
            i = median(d, i - 1, i, i + 1, &mut swaps);
            j = median(d, j - 1, j, j + 1, &mut swaps);
            k = median(d, k - 1, k, k + 1, &mut swaps);
        }
        j = median(d, i, j, k, &mut swaps);
    }
    match swaps {
        0 => (j, Hint::Increasing),
        MAX_SWAPS => (j, Hint::Decreasing),
        _ => (j, Hint::Unknown),
    }
}

fn order2<T>(d: &Data<'_, T>, a: usize, b: usize, swaps: &mut usize) -> (usize, usize) {
    if d.less(b, a) {
        *swaps += 1;
        (b, a)
    } else {
        (a, b)
    }
}

fn median<T>(d: &Data<'_, T>, a: usize, b: usize, c: usize, swaps: &mut usize) -> usize {
    let (a, b) = order2(d, a, b, swaps);
    let (b, c) = order2(d, b, c, swaps);
    let _ = c;
    let (_, b) = order2(d, a, b, swaps);
    b
}

fn reverse_range<T>(d: &mut Data<'_, T>, a: usize, b: usize) {
    let (mut i, mut j) = (a, b - 1);
    while i < j {
        d.swap(i, j);
        i += 1;
        j -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_every_shape_it_is_given() {
        let mut x = 12345u64;
        for n in [0usize, 1, 2, 11, 12, 13, 49, 50, 51, 200, 5000] {
            for shape in 0..5 {
                let mut v: Vec<(i64, usize)> = (0..n)
                    .map(|i| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = match shape {
                            0 => (x % 1000) as i64,
                            1 => i as i64,
                            2 => -(i as i64),
                            3 => (x % 3) as i64,
                            _ => ((i % 7) * (i % 5)) as i64,
                        };
                        (key, i)
                    })
                    .collect();
                go_sort(&mut v, &|a, b| a.0 < b.0);
                assert!(
                    v.windows(2).all(|w| w[0].0 <= w[1].0),
                    "n {n} shape {shape}"
                );
                let mut ids: Vec<usize> = v.iter().map(|p| p.1).collect();
                ids.sort_unstable();
                assert_eq!(ids, (0..n).collect::<Vec<_>>());
            }
        }
    }
}
