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
    fn results_come_back_in_the_pieces_order() {
        for n in [0usize, 1, 2, 5] {
            let pieces: Vec<usize> = (0..n).collect();
            let squares = map_beside(pieces, &|i: usize| i * i);
            assert_eq!(squares, (0..n).map(|i| i * i).collect::<Vec<_>>());
        }
    }
}
