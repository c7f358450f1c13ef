//! Runtime support symbols the generated code may call (what `libmlir_c_runner_utils`
//! provides), implemented here so neither the JIT nor the AOT runtime needs LLVM's libraries.

/// `{ rank, descriptor* }`, as MLIR passes unranked memrefs.
#[repr(C)]
pub struct Unranked {
    rank: i64,
    desc: *const i64,
}

/// Strided copy between two memrefs of equal shape: `memrefCopy(elemSize, src, dst)`.
///
/// # Safety
/// Called only by generated code with valid descriptors of equal rank and sizes.
pub unsafe extern "C" fn memref_copy(elem: i64, src: *const Unranked, dst: *const Unranked) {
    // SAFETY: the caller (generated code) passes valid descriptors.
    unsafe {
        let (s, d) = (&*src, &*dst);
        let rank = s.rank as usize;
        let sd = std::slice::from_raw_parts(s.desc, 3 + 2 * rank);
        let dd = std::slice::from_raw_parts(d.desc, 3 + 2 * rank);
        let e = elem as usize;
        let sizes = &sd[3..3 + rank];
        if sizes.contains(&0) {
            return;
        }
        let (sbase, dbase) = (sd[1] as *const u8, dd[1] as *mut u8);
        let (soff, doff) = (sd[2], dd[2]);
        let (sst, dst_) = (&sd[3 + rank..], &dd[3 + rank..]);
        if rank == 0 {
            std::ptr::copy_nonoverlapping(
                sbase.add(soff as usize * e),
                dbase.add(doff as usize * e),
                e,
            );
            return;
        }
        // Copy the innermost dimension as one run when it is contiguous on both sides.
        let inner = sizes[rank - 1];
        let run = sst[rank - 1] == 1 && dst_[rank - 1] == 1;
        let outer = if run { rank - 1 } else { rank };
        let mut idx = vec![0i64; rank];
        loop {
            let so: i64 = soff + idx.iter().zip(sst).map(|(i, s)| i * s).sum::<i64>();
            let dof: i64 = doff + idx.iter().zip(dst_).map(|(i, s)| i * s).sum::<i64>();
            std::ptr::copy_nonoverlapping(
                sbase.add(so as usize * e),
                dbase.add(dof as usize * e),
                if run { e * inner as usize } else { e },
            );
            let mut k = outer;
            loop {
                if k == 0 {
                    return;
                }
                k -= 1;
                idx[k] += 1;
                if idx[k] < sizes[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
    }
}

/// Keep freed model temporaries in the heap instead of returning them to the system.
///
/// The generated code allocates its intermediate buffers on every call. glibc serves large
/// ones with fresh `mmap`s (or trims them back after `free`), so every run of a batch-64
/// model paid for page faults on megabytes of new pages (about half of its time). Raising
/// the mmap and trim thresholds to glibc's maximum (32 MiB) lets later runs reuse the pages.
/// Idempotent; a no-op off glibc. ONNX Runtime keeps its own arena for the same reason.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only adjusts allocator tunables.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 256 << 20);
        }
    }
}
