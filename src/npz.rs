//! `.npz` files of named tensors (numpy's `np.savez`), for model inputs and outputs.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use ndarray::{ArrayD, IxDyn, OwnedRepr};
use ndarray_npy::{NpzReader, NpzWriter};

use crate::error::{Error, Result};
use crate::graph::{Data, Tensor};

/// Read every array of an npz file, by name (sorted).
pub fn read(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut z = NpzReader::new(f).map_err(|e| Error::io(path, format!("not an npz file: {e}")))?;
    let names = z.names().map_err(|e| Error::io(path, e))?;
    let mut out = BTreeMap::new();
    for name in names {
        let t = read_one(&mut z, &name).ok_or_else(|| {
            Error::io(path, format!("array '{name}' has an unsupported dtype (use float32/64, int64/32/8, uint8 or bool)"))
        })?;
        out.insert(name, t);
    }
    Ok(out)
}

fn read_one(z: &mut NpzReader<File>, name: &str) -> Option<Tensor> {
    macro_rules! try_ty {
        ($t:ty, $v:ident) => {
            if let Ok(a) = z.by_name::<OwnedRepr<$t>, IxDyn>(name) {
                let shape = a.shape().to_vec();
                return Some(Tensor::new(shape, Data::$v(a.iter().cloned().collect())));
            }
        };
    }
    try_ty!(f32, F32);
    try_ty!(f64, F64);
    try_ty!(i64, I64);
    try_ty!(i32, I32);
    try_ty!(i8, I8);
    try_ty!(u8, U8);
    try_ty!(bool, Bool);
    None
}

/// Write tensors to an npz file (uncompressed, entries in the given order).
pub fn write(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let f = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut z = NpzWriter::new(f);
    for (name, t) in tensors {
        let shape = IxDyn(&t.shape);
        let r = match &t.data {
            Data::F32(v) => z.add_array(
                name.as_str(),
                &ArrayD::from_shape_vec(shape, v.clone()).expect("shape"),
            ),
            Data::F64(v) => z.add_array(
                name.as_str(),
                &ArrayD::from_shape_vec(shape, v.clone()).expect("shape"),
            ),
            Data::I64(v) => z.add_array(
                name.as_str(),
                &ArrayD::from_shape_vec(shape, v.clone()).expect("shape"),
            ),
            Data::I32(v) => z.add_array(
                name.as_str(),
                &ArrayD::from_shape_vec(shape, v.clone()).expect("shape"),
            ),
            Data::I8(v) => z.add_array(
                name.as_str(),
                &ArrayD::from_shape_vec(shape, v.clone()).expect("shape"),
            ),
            Data::U8(v) => z.add_array(
                name.as_str(),
                &ArrayD::from_shape_vec(shape, v.clone()).expect("shape"),
            ),
            Data::Bool(v) => z.add_array(
                name.as_str(),
                &ArrayD::from_shape_vec(shape, v.clone()).expect("shape"),
            ),
        };
        r.map_err(|e| Error::io(path, e))?;
    }
    z.finish().map_err(|e| Error::io(path, e))?;
    Ok(())
}
