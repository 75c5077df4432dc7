//! Single-threaded f32 GEMM on slices, through the `gemm` crate (0.19; dfdx
//! keeps its own 0.15 for its Linear layers). Callers parallelise over the
//! batch instead (see `conv`).
//!
//! `gemm` 0.19 forms a row-major product as its column-major transpose, in
//! tiles of 8 or 16 of our columns by [`TILE_ROWS`] of our rows (f32, AVX2).
//! Unlike 0.15 (tiles of up to 24 by 4, a scalar store for any tile cut
//! short, so that 20 channels ran at 2/3 of the speed of 24), it needs no
//! padding of short sides: it ran our convs' products 10-25% faster.

/// Rows of one `gemm` tile.
pub(crate) const TILE_ROWS: usize = 6;

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
