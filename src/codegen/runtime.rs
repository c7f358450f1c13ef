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
        let sbase = (sd[1] as *const u8).add(sd[2] as usize * e);
        let dbase = (dd[1] as *mut u8).add(dd[2] as usize * e);
        copy_dims(e, sizes, &sd[3 + rank..], &dd[3 + rank..], sbase, dbase);
    }
}

/// Copy the block of `sizes` (element strides `ss`, `ds`), the innermost dimension as one
/// run when it is contiguous on both sides.
///
/// # Safety
/// `src`/`dst` address valid blocks of that shape and those strides.
unsafe fn copy_dims(e: usize, sizes: &[i64], ss: &[i64], ds: &[i64], src: *const u8, dst: *mut u8) {
    // SAFETY: offsets stay inside the blocks the caller vouches for.
    unsafe {
        match sizes.len() {
            0 => std::ptr::copy_nonoverlapping(src, dst, e),
            1 if ss[0] == 1 && ds[0] == 1 => {
                std::ptr::copy_nonoverlapping(src, dst, e * sizes[0] as usize)
            }
            _ => {
                for i in 0..sizes[0] as isize {
                    copy_dims(
                        e,
                        &sizes[1..],
                        &ss[1..],
                        &ds[1..],
                        src.offset(i * ss[0] as isize * e as isize),
                        dst.offset(i * ds[0] as isize * e as isize),
                    );
                }
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
