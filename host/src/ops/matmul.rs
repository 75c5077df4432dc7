//! Single-threaded f32 GEMM on slices, through the `gemm` crate dfdx uses.
//! Callers parallelise over the batch instead (see `conv`).
//!
//! `gemm` 0.15 forms a row-major product as its column-major transpose, in
//! tiles of 8, 16 or 24 of our columns by 4 of our rows (f32, AVX2). A tile
//! cut short by the edge of the matrix is stored through a scalar loop that
//! costs about as much as the tile's arithmetic, and when the product has
//! few rows, every tile is cut short: 20 rows ran at 2/3 of the speed of
//! 24, 10 at 1/2 of 16. So callers pad a short side with zeros up to
//! [`ROW_TILE`] or [`COL_TILE`] and ignore the extra results.

use std::borrow::Cow;

/// `dst` rows in multiples of this fill `gemm`'s tiles.
pub(crate) const ROW_TILE: usize = 4;

/// `dst` columns in multiples of this fill `gemm`'s tiles.
pub(crate) const COL_TILE: usize = 8;

/// The row-major `rows x cols` matrix `data` with zero rows appended up to
/// `padded_rows`; borrowed when there are none to add.
pub(crate) fn pad_rows(data: &[f32], cols: usize, padded_rows: usize) -> Cow<'_, [f32]> {
    if data.len() == padded_rows * cols {
        Cow::Borrowed(data)
    } else {
        let mut padded = data.to_vec();
        padded.resize(padded_rows * cols, 0.0);
        Cow::Owned(padded)
    }
}

/// A dense `rows x cols` matrix in a slice: row-major, or the transpose of
/// a row-major one.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

impl<'a> Mat<'a> {
    /// `data` read as a row-major `rows x cols` matrix.
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix size");
        Self {
            data,
            rows,
            cols,
            row_stride: cols as isize,
            col_stride: 1,
        }
    }

    /// The transpose, without moving data.
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// `dst = a * b`, or `dst += a * b` when `accumulate`; `dst` is row-major.
pub(crate) fn matmul(dst: &mut [f32], a: Mat<'_>, b: Mat<'_>, accumulate: bool) {
    assert_eq!(a.cols, b.rows, "inner dimensions");
    assert_eq!(dst.len(), a.rows * b.cols, "output size");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    // SAFETY: every view is dense over its slice (checked by `Mat::new` and
    // above), so all m*k, k*n and m*n strided accesses stay in bounds, and
    // `dst` is an exclusive borrow that cannot alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride,
            a.row_stride,
            b.data.as_ptr(),
            b.col_stride,
            b.row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}
