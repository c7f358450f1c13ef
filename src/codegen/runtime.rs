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
        let mut idx = vec![0i64; rank];
        loop {
            let so: i64 = soff + idx.iter().zip(sst).map(|(i, s)| i * s).sum::<i64>();
            let dof: i64 = doff + idx.iter().zip(dst_).map(|(i, s)| i * s).sum::<i64>();
            std::ptr::copy_nonoverlapping(
                sbase.add(so as usize * e),
                dbase.add(dof as usize * e),
                e,
            );
            let mut k = rank;
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
