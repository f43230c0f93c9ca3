//! Large buffers on transparent huge pages, where the host offers them.
//!
//! Allocating a million-row bill writes about 110 MB of output rows into memory
//! fresh from the kernel. On Linux every 4 KiB page of it faults on first touch
//! (a zeroed page, a cgroup charge, a page-table update): measured on the
//! benchmark's bill + usage, 27,000 faults and a third of the allocation's time.
//! With `transparent_hugepage` in its `madvise` mode (most distributions'
//! default) the kernel backs a range with 2 MiB pages only when asked, which
//! turns those faults into about 60.
//!
//! The advice changes no byte, the kernel may ignore it, and only whole 2 MiB
//! spans inside the buffer are advised, so no other allocation's memory is
//! touched. Elsewhere (wasm, other systems) [`reserve_large`] only reserves.

/// Room for `additional` more items in `vec` (at least doubling its capacity
/// when it grows, as `Vec` does), the unused capacity advised onto huge pages.
/// The room is an estimate: if the allocator refuses it, nothing changes and
/// the vector grows as items come.
pub(crate) fn reserve_large<T>(vec: &mut Vec<T>, additional: usize) {
    let free = vec.capacity() - vec.len();
    if free >= additional {
        return;
    }
    let wanted = additional.max(vec.capacity());
    if vec.try_reserve_exact(wanted).is_err() {
        return;
    }
    let spare = vec.spare_capacity_mut();
    let bytes = std::mem::size_of_val(spare);
    let start = spare.as_mut_ptr().cast::<u8>();
    if let Some((offset, len)) = whole_huge_pages(start.addr(), bytes) {
        advise_huge_pages(start.wrapping_add(offset), len);
    }
}

/// `len` zeros, in memory advised onto huge pages (see [`reserve_large`]).
pub(crate) fn zeroed_large(len: usize) -> Vec<u64> {
    let mut zeros = Vec::new();
    reserve_large(&mut zeros, len);
    zeros.resize(len, 0);
    zeros
}

/// The size of a transparent huge page on x86-64 and on arm64 with 4 KiB
/// pages; where huge pages are larger, fewer spans qualify.
const HUGE_PAGE: usize = 2 << 20;

/// The whole huge pages inside `len` bytes from address `start`, as (offset
/// from `start`, bytes), if there is one.
fn whole_huge_pages(start: usize, len: usize) -> Option<(usize, usize)> {
    let first = start.checked_next_multiple_of(HUGE_PAGE)?;
    let end = start.checked_add(len)?;
    let last = end - end % HUGE_PAGE;
    (last > first).then(|| (first - start, last - first))
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(first: *mut u8, len: usize) {
    // SAFETY: [first, first + len) lies inside one live allocation (the
    // caller's spare capacity), and MADV_HUGEPAGE only sets how the kernel backs
    // those pages: no mapping is removed, no content changes. A refusal (a
    // kernel without THP) leaves the buffer as it was, so it is ignored.
    let _ = unsafe { libc::madvise(first.cast::<libc::c_void>(), len, libc::MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_first: *mut u8, _len: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_huge_pages_inside_the_buffer_are_advised() {
        const MIB: usize = 1 << 20;
        let cases = [
            // (start, len) -> (offset, len) of the whole 2 MiB pages inside
            ((0, 2 * MIB), Some((0, 2 * MIB))),
            ((1, 4 * MIB), Some((2 * MIB - 1, 2 * MIB))),
            ((MIB, 3 * MIB), Some((MIB, 2 * MIB))),
            ((MIB, 2 * MIB), None),
            ((3 * MIB, 10 * MIB), Some((MIB, 8 * MIB))),
            ((0, 0), None),
            ((usize::MAX - 10, 100), None),
        ];
        for ((start, len), expected) in cases {
            assert_eq!(whole_huge_pages(start, len), expected, "{start} {len}");
        }
    }
}
