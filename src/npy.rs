//! NumPy `.npy` files of float32 (features, targets, scores): reading 1- to 3-D arrays, writing them
//! atomically, and rejecting non-finite values with the position of the first one.
//!
//! Reads `<f4` and `<f8` (float64 is converted, as many published feature sets store it) in C order,
//! format versions 1–3. Writes version 1 `<f4`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"\x93NUMPY";

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a .npy file: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: dtype {dtype} is not supported (need little-endian float32 '<f4' or float64 '<f8')")]
    Dtype { path: PathBuf, dtype: String },
    #[error("{path}: shape {shape:?} has {got} dimensions, expected {expected}")]
    Rank { path: PathBuf, shape: Vec<usize>, got: usize, expected: usize },
    #[error("{path}: value {value} at index {index:?} is not finite")]
    NonFinite { path: PathBuf, index: Vec<usize>, value: f32 },
}

/// A dense float32 array in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl NpyArray {
    /// Rows and columns of a 2-D array; errors (naming `path`) for any other rank.
    pub fn dims2(&self, path: &Path) -> Result<(usize, usize), NpyError> {
        match self.shape[..] {
            [rows, cols] => Ok((rows, cols)),
            _ => Err(NpyError::Rank { path: path.to_path_buf(), shape: self.shape.clone(), got: self.shape.len(), expected: 2 }),
        }
    }

    /// Errors on the first NaN or infinity, giving its multi-index.
    pub fn check_finite(&self, path: &Path) -> Result<(), NpyError> {
        match self.data.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(flat) => {
                let mut index = vec![0; self.shape.len()];
                let mut rest = flat;
                for (slot, &dim) in index.iter_mut().zip(&self.shape).rev() {
                    *slot = rest % dim.max(1);
                    rest /= dim.max(1);
                }
                Err(NpyError::NonFinite { path: path.to_path_buf(), index, value: self.data[flat] })
            }
        }
    }
}

/// Reads a `.npy` file of float32 or float64.
pub fn read(path: &Path) -> Result<NpyArray, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io { path: path.to_path_buf(), source })?;
    parse(&bytes).map_err(|e| e.at(path))
}

/// Reads a 2-D array and checks that every value is finite.
pub fn read_matrix(path: &Path) -> Result<NpyArray, NpyError> {
    let array = read(path)?;
    array.dims2(path)?;
    array.check_finite(path)?;
    Ok(array)
}

enum ParseError {
    Format(String),
    Dtype(String),
}

impl ParseError {
    fn at(self, path: &Path) -> NpyError {
        match self {
            ParseError::Format(message) => NpyError::Format { path: path.to_path_buf(), message },
            ParseError::Dtype(dtype) => NpyError::Dtype { path: path.to_path_buf(), dtype },
        }
    }
}

fn parse(bytes: &[u8]) -> Result<NpyArray, ParseError> {
    let bad = |m: &str| ParseError::Format(m.to_string());
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("missing the \\x93NUMPY magic"));
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(ParseError::Format(format!("unknown format version {v}"))),
    };
    let data_start = header_start + header_len;
    let header = bytes.get(header_start..data_start).ok_or_else(|| bad("header is cut short"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| bad("header has no 'descr'"))?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let fortran = dict_value(header, "fortran_order").ok_or_else(|| bad("header has no 'fortran_order'"))?;
    if fortran.trim().starts_with("True") {
        return Err(bad("Fortran-ordered arrays are not supported; save with np.ascontiguousarray"));
    }
    let shape_text = dict_value(header, "shape").ok_or_else(|| bad("header has no 'shape'"))?;
    let shape_text = shape_text.trim();
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.find(')').map(|end| &s[..end]))
        .ok_or_else(|| bad("shape is not a tuple"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| ParseError::Format(format!("shape entry {s:?} is not a number"))))
        .collect::<Result<Vec<_>, _>>()?;
    let count: usize = shape.iter().product();
    let payload = &bytes[data_start..];
    let data = match descr {
        "<f4" | "f4" | "float32" => {
            if payload.len() != count * 4 {
                return Err(ParseError::Format(format!("shape {shape:?} needs {} bytes of data, file has {}", count * 4, payload.len())));
            }
            payload.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        }
        "<f8" | "f8" | "float64" => {
            if payload.len() != count * 8 {
                return Err(ParseError::Format(format!("shape {shape:?} needs {} bytes of data, file has {}", count * 8, payload.len())));
            }
            payload.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect()
        }
        other => return Err(ParseError::Dtype(other.to_string())),
    };
    Ok(NpyArray { shape, data })
}

/// The text after `'key':` up to the next top-level comma (a tuple counts as one value).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[start + key.len() + 2..];
    let rest = &rest[rest.find(':')? + 1..];
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    Some(rest)
}

/// Encodes a float32 array as `.npy` version 1 bytes.
pub fn encode(shape: &[usize], data: &[f32]) -> Vec<u8> {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "shape and data length agree");
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Data starts on a 64-byte boundary, header ends with a newline.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes a float32 array atomically: `PATH.tmp`, sync, rename.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let io = |source| NpyError::Io { path: path.to_path_buf(), source };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&encode(shape, data))?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_2d_and_3d() {
        for shape in [vec![3usize, 5], vec![2, 3, 4]] {
            let data: Vec<f32> = (0..shape.iter().product::<usize>()).map(|i| i as f32 * 0.5 - 1.0).collect();
            let bytes = encode(&shape, &data);
            assert_eq!((bytes.len() - data.len() * 4) % 64, 0);
            let back = parse(&bytes).ok().unwrap();
            assert_eq!(back, NpyArray { shape, data });
        }
    }

    #[test]
    fn reads_float64_and_rejects_other_dtypes() {
        let with_dtype = |dtype: &[u8]| {
            let mut bytes = encode(&[2], &[0.0, 0.0]);
            let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
            bytes[at..at + 3].copy_from_slice(dtype);
            bytes
        };
        let mut bytes = with_dtype(b"<f8");
        bytes.truncate(bytes.len() - 8);
        bytes.extend_from_slice(&1.5f64.to_le_bytes());
        bytes.extend_from_slice(&(-2.0f64).to_le_bytes());
        assert_eq!(parse(&bytes).ok().unwrap().data, vec![1.5, -2.0]);
        assert!(matches!(parse(&with_dtype(b"<i4")), Err(ParseError::Dtype(d)) if d == "<i4"));
    }

    #[test]
    fn non_finite_value_is_located() {
        let a = NpyArray { shape: vec![2, 3], data: vec![0.0, 1.0, 2.0, 3.0, f32::NAN, 5.0] };
        let err = a.check_finite(Path::new("x.npy")).unwrap_err().to_string();
        assert!(err.contains("x.npy") && err.contains("[1, 1]"), "{err}");
    }

    #[test]
    fn truncated_data_is_an_error() {
        let mut bytes = encode(&[4, 4], &[0.0; 16]);
        bytes.truncate(bytes.len() - 3);
        assert!(matches!(parse(&bytes), Err(ParseError::Format(m)) if m.contains("needs 64 bytes")));
    }
}
