//! NumPy `.npz` files: a zip archive of `.npy` arrays.
//!
//! Writes format version 1.0 headers (padded to a multiple of 64 bytes, as NumPy does),
//! little-endian, C order, and deflate-compressed members (`np.load` reads them like the
//! output of `np.savez_compressed`). Supported dtypes: `<f4`, `<f8`, `<i8` and fixed-width
//! unicode strings `<U{n}` (read by `np.load` without `allow_pickle`). Arrays are 1-D or 2-D.
//!
//! Reading accepts stored or deflated members, header versions 1.0/2.0/3.0, and Fortran
//! order (converted to C order). Errors name the file, the array and the problem.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The elements of one array, in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    /// Fixed-width unicode strings (`<U{n}`); trailing NULs are not part of a string.
    Str(Vec<String>),
}

impl NpyData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            NpyData::F32(v) => v.len(),
            NpyData::F64(v) => v.len(),
            NpyData::I64(v) => v.len(),
            NpyData::Str(v) => v.len(),
        }
    }

    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dtype name in NumPy's spelling (`<U` without the width for strings).
    pub fn dtype_name(&self) -> &'static str {
        match self {
            NpyData::F32(_) => "<f4",
            NpyData::F64(_) => "<f8",
            NpyData::I64(_) => "<i8",
            NpyData::Str(_) => "<U",
        }
    }
}

/// One n-dimensional array (1-D or 2-D in practice).
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

impl NpyArray {
    /// An array of the given shape; fails if the element count does not match the shape.
    pub fn new(shape: Vec<usize>, data: NpyData) -> Result<Self, String> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(format!(
                "shape {:?} needs {} elements, got {}",
                shape,
                n,
                data.len()
            ));
        }
        Ok(NpyArray { shape, data })
    }

    pub fn f64_1d(v: Vec<f64>) -> Self {
        NpyArray {
            shape: vec![v.len()],
            data: NpyData::F64(v),
        }
    }

    pub fn i64_1d(v: Vec<i64>) -> Self {
        NpyArray {
            shape: vec![v.len()],
            data: NpyData::I64(v),
        }
    }

    pub fn strings(v: Vec<String>) -> Self {
        NpyArray {
            shape: vec![v.len()],
            data: NpyData::Str(v),
        }
    }

    /// A rows x cols f64 matrix from row-major data. Panics if the sizes disagree.
    pub fn f64_2d(rows: usize, cols: usize, v: Vec<f64>) -> Self {
        assert_eq!(rows * cols, v.len(), "f64_2d: {rows}x{cols} != {}", v.len());
        NpyArray {
            shape: vec![rows, cols],
            data: NpyData::F64(v),
        }
    }

    /// A rows x cols f32 matrix from row-major data. Panics if the sizes disagree.
    pub fn f32_2d(rows: usize, cols: usize, v: Vec<f32>) -> Self {
        assert_eq!(rows * cols, v.len(), "f32_2d: {rows}x{cols} != {}", v.len());
        NpyArray {
            shape: vec![rows, cols],
            data: NpyData::F32(v),
        }
    }

    /// The `descr` string of the `.npy` header.
    pub fn descr(&self) -> String {
        match &self.data {
            NpyData::Str(v) => format!("<U{}", string_width(v)),
            d => d.dtype_name().to_string(),
        }
    }
}

fn string_width(v: &[String]) -> usize {
    v.iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        .max(1)
}

/// Errors from reading or writing `.npz` files. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum NpzError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a readable zip/npz archive: {source}", path.display())]
    Zip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
    #[error("{}: array '{array}': {msg}", path.display())]
    Format {
        path: PathBuf,
        array: String,
        msg: String,
    },
    #[error("{}: missing array '{array}' (the file has: {present})", path.display())]
    Missing {
        path: PathBuf,
        array: String,
        present: String,
    },
    #[error("{}: array '{array}' has dtype {found}, expected {expected}", path.display())]
    Dtype {
        path: PathBuf,
        array: String,
        found: String,
        expected: String,
    },
    #[error("{}: array '{array}' has shape {found:?}, expected {expected}", path.display())]
    Shape {
        path: PathBuf,
        array: String,
        found: Vec<usize>,
        expected: String,
    },
}

// ---------------------------------------------------------------------------------------------
// .npy encoding

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Encodes one array as a `.npy` (version 1.0) byte string.
pub fn encode_npy(arr: &NpyArray) -> Vec<u8> {
    let shape = match arr.shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", arr.shape[0]),
        _ => format!(
            "({})",
            arr.shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        arr.descr(),
        shape
    );
    // As NumPy: room for the first axis to grow to 21 digits, then spaces and a final newline
    // so that the data starts on a 64-byte boundary.
    if let Some(first) = arr.shape.first() {
        let digits = first.to_string().len();
        header.extend(std::iter::repeat_n(' ', 21usize.saturating_sub(digits)));
    }
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    header.extend(std::iter::repeat_n(' ', pad));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + arr.data.len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match &arr.data {
        NpyData::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::I64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::Str(v) => {
            let w = string_width(v);
            for s in v {
                let mut n = 0;
                for c in s.chars() {
                    out.extend_from_slice(&(c as u32).to_le_bytes());
                    n += 1;
                }
                for _ in n..w {
                    out.extend_from_slice(&0u32.to_le_bytes());
                }
            }
        }
    }
    out
}

fn header_value<'a>(header: &'a str, key: &str) -> Result<&'a str, String> {
    let pat_single = format!("'{key}'");
    let pat_double = format!("\"{key}\"");
    let pos = header
        .find(&pat_single)
        .map(|p| p + pat_single.len())
        .or_else(|| header.find(&pat_double).map(|p| p + pat_double.len()))
        .ok_or_else(|| format!("header has no '{key}': {header}"))?;
    let rest = header[pos..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(|| format!("malformed header near '{key}': {header}"))?
        .trim_start();
    Ok(rest)
}

/// Splits a `.npy` byte string into its header text and the payload after the header.
fn split_npy(bytes: &[u8]) -> Result<(&str, &[u8]), String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy array (bad magic)".into());
    }
    let major = bytes[6];
    let (hlen, hstart) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    if bytes.len() < hstart + hlen {
        return Err("truncated header".into());
    }
    let header = std::str::from_utf8(&bytes[hstart..hstart + hlen])
        .map_err(|_| "header is not text".to_string())?;
    Ok((header, &bytes[hstart + hlen..]))
}

/// The header's `descr` (the dtype string, without its quotes).
fn header_descr(header: &str) -> Result<&str, String> {
    let d = header_value(header, "descr")?;
    let quote = d
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"')
        .ok_or_else(|| format!("unsupported dtype description: {d}"))?;
    let end = d[1..]
        .find(quote)
        .ok_or_else(|| format!("malformed descr: {d}"))?;
    Ok(&d[1..1 + end])
}

/// The header's `fortran_order` flag.
fn header_fortran_order(header: &str) -> Result<bool, String> {
    let f = header_value(header, "fortran_order")?;
    if f.starts_with("True") {
        Ok(true)
    } else if f.starts_with("False") {
        Ok(false)
    } else {
        Err(format!("malformed fortran_order: {f}"))
    }
}

/// The header's `shape` tuple (Python 2 `L` suffixes allowed).
fn header_shape(header: &str) -> Result<Vec<usize>, String> {
    let s = header_value(header, "shape")?;
    let s = s
        .strip_prefix('(')
        .ok_or_else(|| format!("malformed shape: {s}"))?;
    let close = s.find(')').ok_or_else(|| format!("malformed shape: {s}"))?;
    s[..close]
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.trim_end_matches('L').parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("malformed shape: ({}", &s[..=close]))
}

/// The first `n` little-endian values of `N` bytes each in `payload` (which holds them).
fn le_values<T, const N: usize>(payload: &[u8], n: usize, from: fn([u8; N]) -> T) -> Vec<T> {
    payload[..n * N]
        .chunks_exact(N)
        .map(|c| from(c.try_into().unwrap()))
        .collect()
}

/// The first `n` fixed-width strings of `w` UTF-32 code points in `payload` (which holds
/// them); a string ends at its first NUL.
fn utf32_strings(payload: &[u8], n: usize, w: usize) -> Result<Vec<String>, String> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = String::new();
        for c in payload[i * 4 * w..(i + 1) * 4 * w].chunks_exact(4) {
            let cp = u32::from_le_bytes(c.try_into().unwrap());
            if cp == 0 {
                break;
            }
            s.push(char::from_u32(cp).ok_or("invalid unicode code point")?);
        }
        v.push(s);
    }
    Ok(v)
}

/// Decodes the elements of an array of dtype `descr` and `shape` from the payload, in stored
/// order.
fn decode_elements(descr: &str, shape: &[usize], payload: &[u8]) -> Result<NpyData, String> {
    let n: usize = shape.iter().product();
    let need = |size: usize| -> Result<(), String> {
        if payload.len() < n * size {
            Err(format!(
                "truncated data: shape {:?} of {descr} needs {} bytes, have {}",
                shape,
                n * size,
                payload.len()
            ))
        } else {
            Ok(())
        }
    };
    Ok(match descr {
        "<f4" => {
            need(4)?;
            NpyData::F32(le_values(payload, n, f32::from_le_bytes))
        }
        "<f8" => {
            need(8)?;
            NpyData::F64(le_values(payload, n, f64::from_le_bytes))
        }
        "<i8" => {
            need(8)?;
            NpyData::I64(le_values(payload, n, i64::from_le_bytes))
        }
        u if u.starts_with("<U") => {
            let w: usize = u[2..]
                .parse()
                .map_err(|_| format!("unsupported dtype {u}"))?;
            need(4 * w)?;
            NpyData::Str(utf32_strings(payload, n, w)?)
        }
        other => {
            return Err(format!(
                "unsupported dtype {other} (supported: <f4, <f8, <i8, <U)"
            ))
        }
    })
}

/// Reorders the elements of an `r x c` array from column-major to row-major order.
fn fortran_to_c(data: NpyData, r: usize, c: usize) -> NpyData {
    fn tr<T: Clone>(v: &[T], r: usize, c: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(v.len());
        for i in 0..r {
            for j in 0..c {
                out.push(v[j * r + i].clone());
            }
        }
        out
    }
    match data {
        NpyData::F32(v) => NpyData::F32(tr(&v, r, c)),
        NpyData::F64(v) => NpyData::F64(tr(&v, r, c)),
        NpyData::I64(v) => NpyData::I64(tr(&v, r, c)),
        NpyData::Str(v) => NpyData::Str(tr(&v, r, c)),
    }
}

/// Decodes one `.npy` byte string. The error is a description without the file name.
pub fn decode_npy(bytes: &[u8]) -> Result<NpyArray, String> {
    let (header, payload) = split_npy(bytes)?;
    let descr = header_descr(header)?;
    let fortran = header_fortran_order(header)?;
    let shape = header_shape(header)?;
    let mut data = decode_elements(descr, &shape, payload)?;
    if fortran && shape.len() == 2 {
        data = fortran_to_c(data, shape[0], shape[1]);
    } else if fortran && shape.len() > 2 {
        return Err("Fortran-order arrays with more than 2 dimensions are not supported".into());
    }
    Ok(NpyArray { shape, data })
}

// ---------------------------------------------------------------------------------------------
// .npz files

/// Writes the arrays to `path` as an `.npz` archive (member names get the `.npy` suffix).
pub fn write_npz(path: &Path, arrays: &[(&str, &NpyArray)]) -> Result<(), NpzError> {
    let io_err = |source| NpzError::Io {
        path: path.to_path_buf(),
        source,
    };
    let zip_err = |source| NpzError::Zip {
        path: path.to_path_buf(),
        source,
    };
    let mut zw = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, arr) in arrays {
        let bytes = encode_npy(arr);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(bytes.len() as u64 >= u32::MAX as u64);
        zw.start_file(format!("{name}.npy"), opts)
            .map_err(zip_err)?;
        zw.write_all(&bytes).map_err(io_err)?;
    }
    let bytes = zw.finish().map_err(zip_err)?.into_inner();
    crate::files::write_bytes(path, &bytes).map_err(io_err)
}

/// The arrays of one `.npz` file, by name (without the `.npy` suffix).
#[derive(Debug, Clone)]
pub struct Npz {
    pub path: PathBuf,
    pub arrays: BTreeMap<String, NpyArray>,
}

/// Reads every array of an `.npz` archive.
pub fn read_npz(path: &Path) -> Result<Npz, NpzError> {
    let file = std::fs::File::open(path).map_err(|source| NpzError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut za =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|source| NpzError::Zip {
            path: path.to_path_buf(),
            source,
        })?;
    let mut arrays = BTreeMap::new();
    for i in 0..za.len() {
        let mut f = za.by_index(i).map_err(|source| NpzError::Zip {
            path: path.to_path_buf(),
            source,
        })?;
        if f.is_dir() {
            continue;
        }
        let member = f.name().to_string();
        let name = member.strip_suffix(".npy").unwrap_or(&member).to_string();
        let mut bytes = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut bytes).map_err(|e| NpzError::Format {
            path: path.to_path_buf(),
            array: name.clone(),
            msg: format!("cannot decompress: {e}"),
        })?;
        let arr = decode_npy(&bytes).map_err(|msg| NpzError::Format {
            path: path.to_path_buf(),
            array: name.clone(),
            msg,
        })?;
        arrays.insert(name, arr);
    }
    Ok(Npz {
        path: path.to_path_buf(),
        arrays,
    })
}

impl Npz {
    /// True if the archive has an array of this name.
    pub fn contains(&self, name: &str) -> bool {
        self.arrays.contains_key(name)
    }

    /// The array of this name, or a `Missing` error listing the arrays present.
    pub fn get(&self, name: &str) -> Result<&NpyArray, NpzError> {
        self.arrays.get(name).ok_or_else(|| NpzError::Missing {
            path: self.path.clone(),
            array: name.to_string(),
            present: self.arrays.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    fn shape_err(&self, name: &str, arr: &NpyArray, expected: &str) -> NpzError {
        NpzError::Shape {
            path: self.path.clone(),
            array: name.to_string(),
            found: arr.shape.clone(),
            expected: expected.to_string(),
        }
    }

    fn dtype_err(&self, name: &str, arr: &NpyArray, expected: &str) -> NpzError {
        NpzError::Dtype {
            path: self.path.clone(),
            array: name.to_string(),
            found: arr.descr(),
            expected: expected.to_string(),
        }
    }

    /// A 2-D float array (`<f4` or `<f8`) as (rows, cols, row-major f64 data).
    pub fn matrix_f64(&self, name: &str) -> Result<(usize, usize, Vec<f64>), NpzError> {
        let arr = self.get(name)?;
        if arr.shape.len() != 2 {
            return Err(self.shape_err(name, arr, "2-D (rows, cols)"));
        }
        let v = match &arr.data {
            NpyData::F64(v) => v.clone(),
            NpyData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            _ => return Err(self.dtype_err(name, arr, "<f4 or <f8")),
        };
        Ok((arr.shape[0], arr.shape[1], v))
    }

    /// A 1-D float array (`<f4` or `<f8`) as f64.
    pub fn vector_f64(&self, name: &str) -> Result<Vec<f64>, NpzError> {
        let arr = self.get(name)?;
        if arr.shape.len() != 1 {
            return Err(self.shape_err(name, arr, "1-D"));
        }
        match &arr.data {
            NpyData::F64(v) => Ok(v.clone()),
            NpyData::F32(v) => Ok(v.iter().map(|&x| x as f64).collect()),
            _ => Err(self.dtype_err(name, arr, "<f4 or <f8")),
        }
    }

    /// A 1-D `<i8` array.
    pub fn vector_i64(&self, name: &str) -> Result<Vec<i64>, NpzError> {
        let arr = self.get(name)?;
        if arr.shape.len() != 1 {
            return Err(self.shape_err(name, arr, "1-D"));
        }
        match &arr.data {
            NpyData::I64(v) => Ok(v.clone()),
            _ => Err(self.dtype_err(name, arr, "<i8")),
        }
    }

    /// A 1-D string array (`<U{n}`).
    pub fn strings(&self, name: &str) -> Result<Vec<String>, NpzError> {
        let arr = self.get(name)?;
        if arr.shape.len() != 1 {
            return Err(self.shape_err(name, arr, "1-D"));
        }
        match &arr.data {
            NpyData::Str(v) => Ok(v.clone()),
            _ => Err(self.dtype_err(name, arr, "<U (unicode strings)")),
        }
    }

    /// Checks that an array has exactly `len` elements along axis `axis`.
    pub fn expect_dim(
        &self,
        name: &str,
        axis: usize,
        len: usize,
        what: &str,
    ) -> Result<(), NpzError> {
        let arr = self.get(name)?;
        if arr.shape.get(axis) != Some(&len) {
            return Err(self.shape_err(name, arr, what));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        (dir, p)
    }

    #[test]
    fn npy_header_is_64_byte_aligned_v1() {
        for arr in [
            NpyArray::f64_1d(vec![1.0, 2.0, 3.0]),
            NpyArray::f32_2d(2, 3, vec![0.0; 6]),
            NpyArray::i64_1d(vec![-1, 5]),
            NpyArray::strings(vec!["a".into(), "pitch_range".into()]),
        ] {
            let b = encode_npy(&arr);
            assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
            let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
            assert_eq!((10 + hlen) % 64, 0);
            assert_eq!(b[10 + hlen - 1], b'\n');
            assert_eq!(decode_npy(&b).unwrap(), arr);
        }
        let b = encode_npy(&NpyArray::f32_2d(2, 3, vec![0.0; 6]));
        let h = std::str::from_utf8(&b[10..]).unwrap();
        assert!(h.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        let b = encode_npy(&NpyArray::f64_1d(vec![0.0; 7]));
        // byte-identical to np.save(f, np.zeros(7)) (numpy 2.4)
        let mut want =
            b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (7,), }"
                .to_vec();
        want.extend(std::iter::repeat_n(b' ', 128 - want.len() - 1));
        want.push(b'\n');
        assert_eq!(&b[..128], &want[..]);
    }

    #[test]
    fn npz_round_trip_all_dtypes() {
        let (_d, p) = tmp("x.npz");
        let z = NpyArray::f32_2d(
            3,
            2,
            vec![1.5, -2.0, 3.25, f32::MAX, f32::MIN_POSITIVE, 0.0],
        );
        let a = NpyArray::f64_2d(3, 1, vec![0.1, 1e300, -7.0]);
        let i = NpyArray::i64_1d(vec![0, -1, i64::MAX]);
        let s = NpyArray::strings(vec!["rhy_complexity".into(), "é".into(), "".into()]);
        write_npz(&p, &[("z", &z), ("a", &a), ("i", &i), ("names", &s)]).unwrap();
        let r = read_npz(&p).unwrap();
        assert_eq!(r.arrays.len(), 4);
        assert_eq!(r.get("z").unwrap(), &z);
        assert_eq!(r.get("a").unwrap(), &a);
        assert_eq!(r.get("i").unwrap(), &i);
        assert_eq!(r.get("names").unwrap(), &s);
        let (rows, cols, v) = r.matrix_f64("z").unwrap();
        assert_eq!((rows, cols), (3, 2));
        assert_eq!(v[2], 3.25);
        assert_eq!(r.vector_i64("i").unwrap()[2], i64::MAX);
        assert_eq!(r.strings("names").unwrap()[1], "é");
    }

    #[test]
    fn read_errors_name_file_and_problem() {
        let (_d, p) = tmp("bad.npz");
        let i = NpyArray::i64_1d(vec![1, 2]);
        let m = NpyArray::f64_2d(2, 2, vec![0.0; 4]);
        write_npz(&p, &[("i", &i), ("m", &m)]).unwrap();
        let r = read_npz(&p).unwrap();
        let e = r.matrix_f64("i").unwrap_err().to_string();
        assert!(
            e.contains("bad.npz") && e.contains("'i'") && e.contains("shape"),
            "{e}"
        );
        let e = r.vector_f64("i").unwrap_err().to_string();
        assert!(e.contains("dtype <i8") && e.contains("<f4 or <f8"), "{e}");
        let e = r.get("z").unwrap_err().to_string();
        assert!(e.contains("missing array 'z'") && e.contains("i, m"), "{e}");
        let e = r.expect_dim("m", 0, 3, "(3, D)").unwrap_err().to_string();
        assert!(e.contains("[2, 2]") && e.contains("(3, D)"), "{e}");

        let (_d2, q) = tmp("notzip.npz");
        std::fs::write(&q, b"hello").unwrap();
        let e = read_npz(&q).unwrap_err().to_string();
        assert!(e.contains("notzip.npz") && e.contains("zip"), "{e}");
        let e = read_npz(Path::new("/nonexistent/x.npz"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/x.npz"), "{e}");
    }

    #[test]
    fn decode_rejects_unsupported_and_truncated() {
        let mut b = encode_npy(&NpyArray::f64_1d(vec![1.0, 2.0]));
        b.truncate(b.len() - 3);
        assert!(decode_npy(&b).unwrap_err().contains("truncated"));
        let mut b = encode_npy(&NpyArray::f64_1d(vec![1.0]));
        let at = b.windows(3).position(|w| w == b"<f8").unwrap();
        b[at] = b'>';
        let e = decode_npy(&b).unwrap_err();
        assert!(e.contains(">f8"), "{e}");
        assert!(decode_npy(b"garbage!!!!!").unwrap_err().contains("magic"));
    }

    #[test]
    fn decode_fortran_order_and_v2() {
        // Hand-built header: 2x3 f8 in Fortran order, version 2.0.
        let header = "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }\n";
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&[2, 0]);
        b.extend_from_slice(&(header.len() as u32).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        for x in [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0] {
            b.extend_from_slice(&x.to_le_bytes());
        }
        let a = decode_npy(&b).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, NpyData::F64(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    }
}
