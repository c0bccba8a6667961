//! The decoder's 8-bit matrix products on the CPU: weights held as `i8` with an `f32`
//! scale per 32 values of a row (the precision of ggml's Q8_0), the activations
//! quantized the same way on the fly, integer dot products per block and one `f32`
//! multiply-add per block.
//!
//! candle's own Q8_0 product is fast only on CPUs with VNNI (its tiled kernels), and
//! holds its scales in f16: there tiny.en misheard twice float32's words (10/96), here
//! as many (5/96). Elsewhere candle computes each output row by row of the
//! activations, so several rows (the beams of a beam search, a window's prompt) read
//! every weight once per row. Here a group of four weight rows is read once for all
//! rows of the activations. Measured on a 2-core AVX2 EPYC (Zen 2), one thread, base's
//! shapes: a single row runs as candle's does (the logits, 51 865 × 512: 7.2 ms against
//! 6.5); five rows (a beam of 5) 3× faster (the logits: 9.4 ms against 29; float32
//! 25), a hundred (a prompt) 3× faster than candle's, though twice float32's time.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Values per scale.
pub const BLOCK: usize = 32;

/// Weight rows per pass over the activations.
const ROWS: usize = 4;

/// Groups of [`ROWS`] rows per parallel task at least (the logits have 13 000 groups).
const GROUPS_PER_TASK: usize = 32;

/// A `[rows, cols]` weight matrix in 8 bits, multiplied from the right
/// (`x · Wᵀ`, as a linear layer's weight is held).
pub struct Int8Matrix {
    rows: usize,
    cols: usize,
    /// `rows × cols` quantized values, row after row.
    qs: Vec<i8>,
    /// `rows × cols / BLOCK` scales: value = `q × scale`.
    scales: Vec<f32>,
}

/// Rows of values quantized per block: `q` in −127..=127 and one scale per block.
struct Quantized {
    qs: Vec<i8>,
    scales: Vec<f32>,
}

impl Quantized {
    /// `x` (a whole number of blocks), each block scaled by its largest magnitude.
    fn of(x: &[f32]) -> Quantized {
        let mut qs = vec![0i8; x.len()];
        let mut scales = vec![0f32; x.len() / BLOCK];
        for ((values, q), scale) in x
            .chunks_exact(BLOCK)
            .zip(qs.chunks_exact_mut(BLOCK))
            .zip(scales.iter_mut())
        {
            let largest = values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = largest / 127.0;
            let inverse = if d > 0.0 { 1.0 / d } else { 0.0 };
            for (q, v) in q.iter_mut().zip(values) {
                // Within ±127 by construction (NaN becomes 0, as the cast saturates).
                *q = (v * inverse).round() as i8;
            }
            *scale = d;
        }
        Quantized { qs, scales }
    }
}

impl Int8Matrix {
    /// `weight` (`[rows, cols]`, any float dtype, on the CPU) quantized; `cols` must be a
    /// multiple of [`BLOCK`].
    pub fn quantize(weight: &Tensor) -> Result<Int8Matrix> {
        let (rows, cols) = weight.dims2()?;
        if !cols.is_multiple_of(BLOCK) {
            return Err(candle_core::Error::Msg(format!(
                "8-bit weights need rows of a multiple of {BLOCK} values, not {cols}"
            )));
        }
        let values = weight
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let Quantized { qs, scales } = Quantized::of(&values);
        Ok(Int8Matrix { rows, cols, qs, scales })
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        (self.qs.len() + self.scales.len() * size_of::<f32>()) as u64
    }

    /// `x · Wᵀ` for `x` `[…, cols]` (f32, on the CPU).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(self)
    }

    /// `x · Wᵀ` for the `m` rows of `x`: `[m, rows]`, row after row.
    fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let a = Quantized::of(x);
        let blocks = self.cols / BLOCK;
        // By weight row, each group of rows with its `m` products side by side (so that
        // the groups are disjoint slices for the threads), then turned to `[m, rows]`.
        let mut by_row = vec![0f32; self.rows * m];
        by_row
            .par_chunks_mut(ROWS * m)
            .enumerate()
            .with_min_len(GROUPS_PER_TASK)
            .for_each(|(g, out)| {
                let first = g * ROWS;
                let n = out.len() / m;
                let w = &self.qs[first * self.cols..(first + n) * self.cols];
                let ws = &self.scales[first * blocks..(first + n) * blocks];
                let mut dots = [0f32; ROWS];
                for i in 0..m {
                    let aq = &a.qs[i * self.cols..(i + 1) * self.cols];
                    let scales = &a.scales[i * blocks..(i + 1) * blocks];
                    dot_rows(aq, scales, w, ws, &mut dots[..n]);
                    for (r, &d) in dots[..n].iter().enumerate() {
                        out[r * m + i] = d;
                    }
                }
            });
        if m == 1 {
            return by_row;
        }
        let mut out = vec![0f32; m * self.rows];
        for (r, products) in by_row.chunks_exact(m).enumerate() {
            for (i, &p) in products.iter().enumerate() {
                out[i * self.rows + r] = p;
            }
        }
        out
    }
}

/// `dots[r] = a · w[r]` for the `dots.len()` rows of `w` (each `a.len()` values).
fn dot_rows(a: &[i8], a_scales: &[f32], w: &[i8], w_scales: &[f32], dots: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = v3() {
        simd.vectorize(Avx2DotRows {
            simd,
            a,
            a_scales,
            w,
            w_scales,
            dots,
        });
        return;
    }
    scalar_dot_rows(a, a_scales, w, w_scales, dots);
}

/// AVX2 and FMA, when this CPU has them (asked once).
#[cfg(target_arch = "x86_64")]
fn v3() -> Option<pulp::x86::V3> {
    use std::sync::OnceLock;
    static V3: OnceLock<Option<pulp::x86::V3>> = OnceLock::new();
    *V3.get_or_init(pulp::x86::V3::try_new)
}

/// The reference: integer sums per block, scaled and added in `f32`.
fn scalar_dot_rows(a: &[i8], a_scales: &[f32], w: &[i8], w_scales: &[f32], dots: &mut [f32]) {
    let cols = a.len();
    let blocks = a_scales.len();
    for (r, dot) in dots.iter_mut().enumerate() {
        let row = &w[r * cols..(r + 1) * cols];
        let scales = &w_scales[r * blocks..(r + 1) * blocks];
        *dot = a
            .chunks_exact(BLOCK)
            .zip(row.chunks_exact(BLOCK))
            .zip(a_scales.iter().zip(scales))
            .map(|((x, y), (dx, dy))| {
                let sum: i32 = x.iter().zip(y).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum();
                sum as f32 * (dx * dy)
            })
            .sum();
    }
}

/// AVX2 (through `pulp`'s checked token: no `unsafe`): per block, `|a|` (unsigned)
/// times `w` carrying `a`'s sign (`vpsignb`), summed in pairs to 16 bits (`vpmaddubsw`:
/// at most 2 × 127 × 127, no saturation), to 32 bits (`vpmaddwd`), then to `f32` and
/// added with the block's two scales; one accumulator per row, summed across lanes at
/// the end.
#[cfg(target_arch = "x86_64")]
struct Avx2DotRows<'a> {
    simd: pulp::x86::V3,
    a: &'a [i8],
    a_scales: &'a [f32],
    w: &'a [i8],
    w_scales: &'a [f32],
    dots: &'a mut [f32],
}

#[cfg(target_arch = "x86_64")]
impl pulp::NullaryFnOnce for Avx2DotRows<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        use pulp::bytemuck::cast;
        use std::arch::x86_64::{__m256, __m256i};
        let Avx2DotRows {
            simd,
            a,
            a_scales,
            w,
            w_scales,
            dots,
        } = self;
        let (avx, avx2, fma) = (simd.avx, simd.avx2, simd.fma);
        let (a, _) = a.as_chunks::<BLOCK>();
        let (w, _) = w.as_chunks::<BLOCK>();
        let blocks = a.len();
        let n = dots.len().min(ROWS);
        debug_assert!(a_scales.len() == blocks && w.len() == n * blocks && w_scales.len() == n * blocks);
        let ones = avx._mm256_set1_epi16(1);
        let mut acc = [avx._mm256_setzero_ps(); ROWS];
        for (b, (&x, &dx)) in a.iter().zip(a_scales).enumerate() {
            let x: __m256i = cast(x);
            let magnitude = avx2._mm256_sign_epi8(x, x);
            for (r, acc) in acc.iter_mut().enumerate().take(n) {
                let (Some(&y), Some(&dy)) = (w.get(r * blocks + b), w_scales.get(r * blocks + b)) else {
                    continue;
                };
                let pairs = avx2._mm256_maddubs_epi16(magnitude, avx2._mm256_sign_epi8(cast(y), x));
                let sums = avx._mm256_cvtepi32_ps(avx2._mm256_madd_epi16(pairs, ones));
                *acc = fma._mm256_fmadd_ps(sums, avx._mm256_set1_ps(dx * dy), *acc);
            }
        }
        for (dot, acc) in dots.iter_mut().zip(acc) {
            let lanes: [f32; 8] = cast::<__m256, [f32; 8]>(acc);
            *dot = lanes.iter().sum();
        }
    }
}

impl CustomOp1 for Int8Matrix {
    fn name(&self) -> &'static str {
        "int8-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, shape) = super::ops::rows_of("int8-matmul", storage, layout, self.cols, self.rows)?;
        let m = x.len() / self.cols;
        Ok((CpuStorage::F32(self.matmul(x, m)), shape))
    }
}

/// Asserts that `got` (`x · wᵀ` through 8 bits) is `exact` within the quantization
/// error: each value is off by at most half its step (`steps`: of a row of `x` and of
/// a row of `w`, each value's), so a product by at most Σ |x|·Δw/2 + |w|·Δx/2 + Δx·Δw/4;
/// `slack` absorbs f32's rounding.
#[cfg(test)]
pub(super) fn assert_within_quantization_error(
    x: &Tensor,
    w: &Tensor,
    exact: &Tensor,
    got: &Tensor,
    steps: (impl Fn(&[f32]) -> Vec<f32>, impl Fn(&[f32]) -> Vec<f32>),
    slack: f32,
) -> Result<()> {
    assert_eq!(got.dims(), exact.dims());
    let (xs, ws) = (
        x.to_vec2::<f32>()?,
        w.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?,
    );
    let (exact, got) = (exact.to_vec2::<f32>()?, got.to_vec2::<f32>()?);
    for (i, x) in xs.iter().enumerate() {
        let dx = steps.0(x);
        for (j, w) in ws.iter().enumerate() {
            let dw = steps.1(w);
            let bound: f32 = x
                .iter()
                .zip(w)
                .zip(dx.iter().zip(&dw))
                .map(|((x, w), (dx, dw))| x.abs() * dw / 2.0 + w.abs() * dx / 2.0 + dx * dw / 4.0)
                .sum();
            let (e, g) = (exact[i][j], got[i][j]);
            assert!(
                (e - g).abs() <= bound * 1.01 + slack,
                "{}×{}×{}: {g} against {e} (bound {bound})",
                xs.len(),
                ws.len(),
                x.len()
            );
        }
    }
    Ok(())
}

/// Deterministic values in −1..1 with a few large ones (as activations have).
#[cfg(test)]
pub(super) fn test_values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed | 1;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            if i % 97 == 0 { v * 20.0 } else { v }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn values(n: usize, seed: u64) -> Vec<f32> {
        test_values(n, seed)
    }

    #[test]
    fn products_match_float32_within_the_quantization_error() -> Result<()> {
        for (m, rows, cols) in [(1, 4, 32), (1, 7, 64), (5, 13, 512), (17, 33, 384), (3, 1, 2048)] {
            let x = Tensor::from_vec(values(m * cols, 7 + m as u64), (m, cols), &Device::Cpu)?;
            // Weights as the models hold them: f16.
            let w = Tensor::from_vec(values(rows * cols, 11 + rows as u64), (rows, cols), &Device::Cpu)?
                .to_dtype(DType::F16)?;
            let exact = x.matmul(&w.to_dtype(DType::F32)?.t()?)?;
            let q = Int8Matrix::quantize(&w)?;
            let got = q.forward(&x)?;
            assert_eq!(got.dims(), &[m, rows]);
            let steps = |v: &[f32]| -> Vec<f32> {
                v.chunks(BLOCK)
                    .flat_map(|b| {
                        let d = b.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                        b.iter().map(move |_| d)
                    })
                    .collect()
            };
            assert_within_quantization_error(&x, &w, &exact, &got, (steps, steps), 1e-5)?;
        }
        Ok(())
    }

    #[test]
    fn the_vector_kernel_sums_as_the_reference_does() {
        // Without AVX2 `dot_rows` is the reference itself: say so rather than pass.
        #[cfg(target_arch = "x86_64")]
        let vector = v3().is_some();
        #[cfg(not(target_arch = "x86_64"))]
        let vector = false;
        if !vector {
            eprintln!("SKIPPED: this CPU has no AVX2 and FMA; only the scalar kernel runs here");
            return;
        }
        let cols = 256;
        let a = Quantized::of(&values(cols, 3));
        let w = Quantized::of(&values(ROWS * cols, 5));
        for n in 1..=ROWS {
            let mut reference = [0f32; ROWS];
            scalar_dot_rows(
                &a.qs,
                &a.scales,
                &w.qs[..n * cols],
                &w.scales[..n * cols / BLOCK],
                &mut reference[..n],
            );
            let mut fast = [0f32; ROWS];
            dot_rows(
                &a.qs,
                &a.scales,
                &w.qs[..n * cols],
                &w.scales[..n * cols / BLOCK],
                &mut fast[..n],
            );
            for (r, f) in reference[..n].iter().zip(&fast[..n]) {
                assert!((r - f).abs() <= 1e-4 * r.abs().max(1.0), "{n} rows: {f} against {r}");
            }
        }
    }

    #[test]
    fn extremes_quantize_without_overflow() {
        let mut x = vec![0f32; BLOCK * 3];
        x[0] = -5.0;
        x[1] = 5.0;
        x[BLOCK] = f32::MAX;
        x[BLOCK + 1] = -f32::MAX;
        let q = Quantized::of(&x);
        assert_eq!((q.qs[0], q.qs[1]), (-127, 127));
        assert_eq!((q.qs[BLOCK], q.qs[BLOCK + 1]), (127, -127));
        assert!(q.qs[2 * BLOCK..].iter().all(|&v| v == 0) && q.scales[2] == 0.0);
        // −128 never appears, so the sign trick cannot overflow.
        assert!(q.qs.iter().all(|&v| v != i8::MIN));
    }

    #[test]
    fn bad_shapes_are_refused() -> Result<()> {
        let w = Tensor::zeros((4, 48), DType::F32, &Device::Cpu)?;
        assert!(Int8Matrix::quantize(&w).is_err());
        let q = Int8Matrix::quantize(&Tensor::zeros((4, 64), DType::F32, &Device::Cpu)?)?;
        assert!(q.forward(&Tensor::zeros((2, 32), DType::F32, &Device::Cpu)?).is_err());
        assert!(q.forward(&Tensor::zeros((2, 64), DType::F16, &Device::Cpu)?).is_err());
        Ok(())
    }
}
