//! Scoped threads for the native builds, and their sequential stand-in on
//! wasm32-unknown-unknown, which has no threads.
//!
//! The core never spawns a thread that outlives a call: work is cut into
//! independent pieces, each piece runs on a scoped thread, and the results come
//! back in the pieces' order, so the outcome is the same whatever the number of
//! threads (the callers make each piece's result a function of its input alone).

/// Runs `own` on this thread while every job runs on a scoped thread of its
/// own (a panic is passed on).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn run_beside<T: Send, U>(
    jobs: Vec<impl FnOnce() -> T + Send>,
    own: impl FnOnce() -> U,
) -> (U, Vec<T>) {
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs.into_iter().map(|job| scope.spawn(job)).collect();
        let mine = own();
        (mine, handles.into_iter().map(joined).collect())
    })
}

/// The result of a scoped thread, its panic passed on.
#[cfg(not(target_arch = "wasm32"))]
fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs `own`, then every job: wasm32-unknown-unknown has no threads.
#[cfg(target_arch = "wasm32")]
pub(crate) fn run_beside<T, U>(
    jobs: Vec<impl FnOnce() -> T>,
    own: impl FnOnce() -> U,
) -> (U, Vec<T>) {
    let mine = own();
    (mine, jobs.into_iter().map(|job| job()).collect())
}

/// `(a(), b())`, with `b` on a scoped thread of its own when `threads` allows
/// two (a panic is passed on).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn both<A, B: Send>(
    threads: usize,
    a: impl FnOnce() -> A,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if threads < 2 {
        return (a(), b());
    }
    std::thread::scope(|scope| {
        let handle = scope.spawn(b);
        let first = a();
        (first, joined(handle))
    })
}

/// `(a(), b())`: wasm32-unknown-unknown has no threads.
#[cfg(target_arch = "wasm32")]
pub(crate) fn both<A, B>(_threads: usize, a: impl FnOnce() -> A, b: impl FnOnce() -> B) -> (A, B) {
    (a(), b())
}

/// `work` applied to every piece, the first on this thread and each other on
/// a scoped thread of its own; the results in the pieces' order.
pub(crate) fn map_beside<P, T, W>(pieces: Vec<P>, work: &W) -> Vec<T>
where
    P: Send,
    T: Send,
    W: Fn(P) -> T + Sync,
{
    let mut pieces = pieces.into_iter();
    let Some(first) = pieces.next() else {
        return Vec::new();
    };
    let jobs: Vec<_> = pieces.map(|piece| move || work(piece)).collect();
    let (mine, theirs) = run_beside(jobs, || work(first));
    let mut all = Vec::with_capacity(theirs.len() + 1);
    all.push(mine);
    all.extend(theirs);
    all
}

/// Below this many items a sort stays on one thread: spawning costs more.
const PARALLEL_SORT_MIN: usize = 1 << 14;

/// Sorts `items` by `key` like `sort_unstable_by_key`, in two halves on two
/// threads when `threads` allows: the items are first partitioned around the
/// middle one (`select_nth_unstable_by_key`, one pass), so that each half sorts
/// alone and no merge follows. For items whose keys are distinct (as every
/// caller's are) the order is the one a single sort gives.
pub(crate) fn sort_by_key_on<T: Send, K: Ord>(
    threads: usize,
    items: &mut [T],
    key: impl Fn(&T) -> K + Sync,
) {
    if threads < 2 || items.len() < PARALLEL_SORT_MIN {
        items.sort_unstable_by_key(&key);
        return;
    }
    let middle = items.len() / 2;
    items.select_nth_unstable_by_key(middle, &key);
    let (low, high) = items.split_at_mut(middle);
    both(
        threads,
        || low.sort_unstable_by_key(&key),
        || high.sort_unstable_by_key(&key),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_gives_each_result_its_place() {
        for threads in [1, 2] {
            assert_eq!(both(threads, || "a", || 2), ("a", 2));
        }
    }

    #[test]
    fn a_sort_in_halves_is_a_sort() {
        // Distinct keys in a scrambled order, below and above the threshold.
        for n in [
            0usize,
            1,
            5,
            PARALLEL_SORT_MIN - 1,
            PARALLEL_SORT_MIN,
            100_003,
        ] {
            let items: Vec<u64> = (0..n as u64)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .collect();
            let mut expected = items.clone();
            expected.sort_unstable();
            for threads in [1, 2] {
                let mut sorted = items.clone();
                sort_by_key_on(threads, &mut sorted, |&v| v);
                assert_eq!(sorted, expected, "{n} items, {threads} threads");
            }
        }
    }

    #[test]
    fn results_come_back_in_the_pieces_order() {
        for n in [0usize, 1, 2, 5] {
            let pieces: Vec<usize> = (0..n).collect();
            let squares = map_beside(pieces, &|i: usize| i * i);
            assert_eq!(squares, (0..n).map(|i| i * i).collect::<Vec<_>>());
        }
    }
}
