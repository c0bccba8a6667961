//! 8-bit matrix products over many rows at once (a window's 1500 frames: the encoder's
//! projections and the decoder's cross-attention keys and values), for CPUs with
//! AVX-512 VNNI.
//!
//! The weights are quantized per output (one `f32` scale per row of `W`, symmetric, as
//! CTranslate2's int8 holds them) and the activations per row, so a product sums in
//! 32-bit integers over the whole row and is scaled once at the end — no conversion per
//! block of 32 as in [`super::int8`], whose per-block scales suit the decoder's few
//! rows. The weights are packed in panels of [`NR`] outputs × 4 inputs, the layout
//! `vpdpbusd` reads: each instruction multiplies four inputs of one row of the
//! activations (broadcast) by the same four inputs of 16 outputs and adds them to 16
//! sums, 64 multiply-adds (four times an f32 FMA's 16). A tile of [`MR`] rows × [`NR`]
//! outputs keeps its 16 sums in registers across the whole row.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes: the weights are signed, the
//! activations unsigned with a zero point (`x ≈ scale × (q − zero)`, the row's range
//! from its minimum to its maximum in 256 steps). That range matters: the MLP's second
//! product reads GELU's outputs, nearly all above −0.17, on which a symmetric scale
//! would spend half its steps; with one, tiny.en in 8 bits heard "ill-disposed" as
//! "old-exposed". `zero × Σ w` is taken off each sum.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::ops::rows_from_blocks;

/// Outputs per panel: two 512-bit vectors of 16 sums.
pub const NR: usize = 32;

/// Rows of the activations per tile (16 accumulators, 2 weight vectors and a broadcast
/// live in registers).
const MR: usize = 8;

/// Rows per parallel task: the task's rows (at most 64 × 2048 bytes) stay in L2 while
/// each panel is read once for all of them.
const TASK_ROWS: usize = 8 * MR;

/// Panels per parallel task when there are too few rows to share out (a decoder's
/// step): 256 outputs, so that even a 512-wide product makes two tasks.
const TASK_PANELS: usize = 8;

/// A `[n, k]` weight matrix (and its bias) in 8 bits, multiplied from the right
/// (`x · Wᵀ + b`), packed for `vpdpbusd`.
pub struct Int8Panels {
    n: usize,
    k: usize,
    /// Per panel, per group of four inputs, the panel's [`NR`] outputs' four values:
    /// two 64-byte vectors, the first for outputs 0–15, the second 16–31.
    panels: Vec<[i8; 64]>,
    /// Per output (padded to whole panels with zeros): value = `q × scale`.
    scales: Vec<f32>,
    /// Per output (padded likewise): `Σ q` over its row.
    sums: Vec<i32>,
    /// Per output (padded likewise); zeros when the projection has none.
    bias: Vec<f32>,
}

/// Rows of activations quantized per row: four `u8` to a `u32`, each row's scale and
/// zero point.
struct Rows {
    quads: Vec<u32>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

/// A weight row quantized to −127..=127 with `x / scale`, the scale `max |x| / 127`;
/// writes the values to `q` and returns the scale.
fn quantize_symmetric(x: &[f32], q: &mut [i8]) -> f32 {
    // The largest magnitude through the bits (for floats other than NaN the order of
    // |x|'s bits is the order of |x|).
    let largest = x.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff));
    let scale = f32::from_bits(largest) / 127.0;
    let inverse = if scale > 0.0 && scale.is_finite() {
        1.0 / scale
    } else {
        0.0
    };
    for (q, v) in q.iter_mut().zip(x) {
        *q = round_to_byte((v * inverse).clamp(-127.0, 127.0)) as i8;
    }
    scale
}

/// The low byte of `round_ties_even(v)` for `v` in −128..=255: the integer a sum with
/// 1.5 · 2²³ leaves in the low mantissa bits. Loops over it vectorise; a float-to-
/// integer `as` saturates, which the compiler does one value at a time.
#[inline(always)]
fn round_to_byte(v: f32) -> u8 {
    const SHIFTER: f32 = 12_582_912.0;
    ((v + SHIFTER).to_bits() & 0xff) as u8
}

/// A row of activations quantized to 0..=255 over its range (widened to hold 0, which
/// then is exact): `x ≈ scale × (q − zero)`. Writes the values to `q` and returns the
/// scale and the zero point.
#[inline(always)]
fn quantize_affine(x: &[f32], q: &mut [u8]) -> (f32, i32) {
    let (low, high) = x.iter().fold((0f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
    let scale = (high - low) / 255.0;
    let inverse = if scale > 0.0 && scale.is_finite() {
        1.0 / scale
    } else {
        0.0
    };
    let zero = (-low * inverse).round_ties_even().clamp(0.0, 255.0);
    for (q, v) in q.iter_mut().zip(x) {
        *q = round_to_byte((v * inverse + zero).clamp(0.0, 255.0));
    }
    (scale, zero as i32)
}

struct QuantizeRows<'a> {
    x: &'a [f32],
    k: usize,
    quads: &'a mut [u32],
    scales: &'a mut [f32],
    zeros: &'a mut [i32],
}

impl pulp::WithSimd for QuantizeRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let QuantizeRows {
            x,
            k,
            quads,
            scales,
            zeros,
        } = self;
        let bytes: &mut [u8] = pulp::bytemuck::cast_slice_mut(quads);
        for (((x, q), scale), zero) in x
            .chunks_exact(k)
            .zip(bytes.chunks_exact_mut(k))
            .zip(scales.iter_mut())
            .zip(zeros.iter_mut())
        {
            (*scale, *zero) = quantize_affine(x, q);
        }
    }
}

impl Rows {
    /// The `x.len() / k` rows of `x` (`k` a multiple of 4).
    fn of(x: &[f32], k: usize) -> Rows {
        let m = x.len() / k;
        let mut rows = Rows {
            quads: vec![0; m * k / 4],
            scales: vec![0.0; m],
            zeros: vec![0; m],
        };
        x.par_chunks(TASK_ROWS * k)
            .zip(rows.quads.par_chunks_mut(TASK_ROWS * k / 4))
            .zip(rows.scales.par_chunks_mut(TASK_ROWS))
            .zip(rows.zeros.par_chunks_mut(TASK_ROWS))
            .for_each(|(((x, quads), scales), zeros)| {
                pulp::Arch::new().dispatch(QuantizeRows {
                    x,
                    k,
                    quads,
                    scales,
                    zeros,
                })
            });
        rows
    }
}

impl Int8Panels {
    /// `weight` (`[n, k]`, any float dtype, on the CPU; `k` a multiple of 4) and its
    /// bias quantized and packed.
    pub fn quantize(weight: &Tensor, bias: Option<&Tensor>) -> Result<Int8Panels> {
        let (n, k) = weight.dims2()?;
        if !k.is_multiple_of(4) || k == 0 {
            return Err(candle_core::Error::Msg(format!(
                "8-bit panels need rows of a multiple of 4 values, not {k}"
            )));
        }
        let values = weight
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let padded = n.next_multiple_of(NR);
        let mut scales = vec![0f32; padded];
        let mut q = vec![0i8; padded * k];
        for ((x, q), scale) in values.chunks_exact(k).zip(q.chunks_exact_mut(k)).zip(scales.iter_mut()) {
            *scale = quantize_symmetric(x, q);
        }
        let sums = q
            .chunks_exact(k)
            .map(|row| row.iter().map(|&v| i32::from(v)).sum())
            .collect();
        let kq = k / 4;
        let mut panels = vec![[0i8; 64]; padded / NR * kq * 2];
        for (p, panel) in panels.chunks_exact_mut(kq * 2).enumerate() {
            for (g, vector) in panel.iter_mut().enumerate() {
                let (quad, half) = (g / 2, g % 2);
                for (lane, bytes) in vector.chunks_exact_mut(4).enumerate() {
                    let row = p * NR + half * 16 + lane;
                    bytes.copy_from_slice(&q[row * k + quad * 4..row * k + quad * 4 + 4]);
                }
            }
        }
        let mut padded_bias = vec![0f32; padded];
        if let Some(bias) = bias {
            let bias = bias.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
            if bias.len() != n {
                return Err(candle_core::Error::Msg(format!(
                    "a bias of {} values for {n} outputs",
                    bias.len()
                )));
            }
            padded_bias[..n].copy_from_slice(&bias);
        }
        Ok(Int8Panels {
            n,
            k,
            panels,
            scales,
            sums,
            bias: padded_bias,
        })
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        (self.panels.len() * 64 + (self.scales.len() + self.sums.len() + self.bias.len()) * 4) as u64
    }

    /// `x · Wᵀ + b` for `x` `[…, k]` (f32, on the CPU).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(self)
    }

    /// `x · Wᵀ + b` for the rows of `x`: `[m, n]`, row after row.
    fn matmul(&self, x: &[f32]) -> Vec<f32> {
        let m = x.len() / self.k;
        let rows = Rows::of(x, self.k);
        if m <= MR {
            return self.few_rows(&rows, m);
        }
        let out = self.many_rows(&rows, m);
        let padded = self.scales.len();
        if padded == self.n {
            return out;
        }
        let mut trimmed = Vec::with_capacity(m * self.n);
        for row in out.chunks_exact(padded) {
            trimmed.extend_from_slice(&row[..self.n]);
        }
        trimmed
    }

    /// At most one tile of rows (a decoder's step: one row per beam), the panels shared
    /// out between the threads: `[m, n]`.
    fn few_rows(&self, rows: &Rows, m: usize) -> Vec<f32> {
        let padded = self.scales.len();
        let kernel = Kernel::detect();
        // Panel after panel, `[padded / NR][m][NR]`: one row is already in order.
        let mut by_panel = vec![0f32; m * padded];
        let task = |(task, out): (usize, &mut [f32])| {
            for (j, out) in out.chunks_exact_mut(m * NR).enumerate() {
                kernel.run(self.tile(rows, 0..m, task * TASK_PANELS + j, out, NR, 0));
            }
        };
        // One thread: no tasks (a task handed to the pool per product costs a
        // context switch each, more than the product of one row).
        if rayon::current_num_threads() > 1 {
            by_panel.par_chunks_mut(TASK_PANELS * m * NR).enumerate().for_each(task);
        } else {
            by_panel.chunks_mut(TASK_PANELS * m * NR).enumerate().for_each(task);
        }
        rows_from_blocks(by_panel, m, self.n, NR)
    }

    /// Rows `rows` of the activations against panel `p`, written to `out[row × stride +
    /// column ..][.. NR]`.
    fn tile<'a>(
        &'a self,
        rows: &'a Rows,
        range: std::ops::Range<usize>,
        p: usize,
        out: &'a mut [f32],
        stride: usize,
        column: usize,
    ) -> Tile<'a> {
        let kq = self.k / 4;
        let outputs = p * NR..(p + 1) * NR;
        Tile {
            quads: &rows.quads[range.start * kq..range.end * kq],
            kq,
            scales: &rows.scales[range.clone()],
            zeros: &rows.zeros[range],
            panel: &self.panels[p * kq * 2..(p + 1) * kq * 2],
            w_scales: &self.scales[outputs.clone()],
            w_sums: &self.sums[outputs.clone()],
            bias: &self.bias[outputs],
            out,
            stride,
            column,
        }
    }

    /// Rows in tasks of `TASK_ROWS`, each panel read once per task: `[m, padded]`.
    fn many_rows(&self, rows: &Rows, m: usize) -> Vec<f32> {
        let padded = self.scales.len();
        let mut out = vec![0f32; m * padded];
        let kernel = Kernel::detect();
        out.par_chunks_mut(TASK_ROWS * padded)
            .enumerate()
            .for_each(|(task, out)| {
                let first = task * TASK_ROWS;
                let count = out.len() / padded;
                for p in 0..padded / NR {
                    for start in (0..count).step_by(MR) {
                        let i = first + start;
                        let r = MR.min(count - start);
                        let out = &mut out[start * padded..];
                        kernel.run(self.tile(rows, i..i + r, p, out, padded, p * NR));
                    }
                }
            });
        out
    }
}

/// One tile's inputs: `r ≤ MR` quantized rows against one panel, written to
/// `out[row × stride + column ..][.. NR]`.
struct Tile<'a> {
    quads: &'a [u32],
    kq: usize,
    scales: &'a [f32],
    zeros: &'a [i32],
    panel: &'a [[i8; 64]],
    w_scales: &'a [f32],
    w_sums: &'a [i32],
    bias: &'a [f32],
    out: &'a mut [f32],
    stride: usize,
    column: usize,
}

impl Tile<'_> {
    /// Row `r`'s outputs from its 32-bit sums (`sums[c]` for output `c` of the panel).
    #[inline(always)]
    fn finish(&mut self, r: usize, sums: impl Fn(usize) -> i32) {
        let (scale, zero) = (self.scales[r], self.zeros[r]);
        let at = r * self.stride + self.column;
        for (c, y) in self.out[at..at + NR].iter_mut().enumerate() {
            *y = (sums(c) - zero * self.w_sums[c]) as f32 * (scale * self.w_scales[c]) + self.bias[c];
        }
    }
}

/// The tile kernel this CPU runs.
#[derive(Clone, Copy)]
enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Vnni(avx512::Vnni),
}

impl Kernel {
    fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if let Some(vnni) = avx512::Vnni::detect() {
            return Kernel::Vnni(vnni);
        }
        Kernel::Scalar
    }

    fn run(self, tile: Tile<'_>) {
        match self {
            Kernel::Scalar => scalar_tile(tile),
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni(vnni) => vnni.tile(tile),
        }
    }
}

/// Whether products here run on VNNI (else on the scalar reference, far slower than
/// f32: callers keep their float weights then).
pub fn fast() -> bool {
    !matches!(Kernel::detect(), Kernel::Scalar)
}

/// The reference: the same integer sums, one at a time.
fn scalar_tile(mut tile: Tile<'_>) {
    let kq = tile.kq;
    for r in 0..tile.scales.len() {
        let row: &[u8] = pulp::bytemuck::cast_slice(&tile.quads[r * kq..(r + 1) * kq]);
        let mut sums = [0i32; NR];
        for (quad, vectors) in tile.panel.chunks_exact(2).enumerate() {
            for (c, sum) in sums.iter_mut().enumerate() {
                let w = &vectors[c / 16][(c % 16) * 4..(c % 16) * 4 + 4];
                for (i, &w) in w.iter().enumerate() {
                    *sum += i32::from(w) * i32::from(row[quad * 4 + i]);
                }
            }
        }
        tile.finish(r, |c| sums[c]);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{__m512i, _mm512_dpbusd_epi32, _mm512_set1_epi32, _mm512_setzero_si512};
    use std::sync::OnceLock;

    use pulp::bytemuck::cast;

    use super::super::ops::prefetch;
    use super::{MR, NR, Tile};

    /// How far ahead of the kernel the weights are fetched, in 64-byte vectors (8 KB:
    /// measured against 2 and 4 KB with the weights coming from memory, as a decoder's
    /// step reads them).
    const PREFETCH_AHEAD: usize = 128;

    /// Proof that this CPU has AVX-512 F, BW and VNNI: made only by [`Vnni::detect`].
    #[derive(Clone, Copy)]
    pub struct Vnni(());

    impl Vnni {
        pub fn detect() -> Option<Vnni> {
            static FOUND: OnceLock<bool> = OnceLock::new();
            let found = *FOUND.get_or_init(|| {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vnni")
            });
            found.then_some(Vnni(()))
        }

        pub fn tile(self, tile: Tile<'_>) {
            match tile.scales.len() {
                8 => self.rows::<8>(tile),
                7 => self.rows::<7>(tile),
                6 => self.rows::<6>(tile),
                5 => self.rows::<5>(tile),
                4 => self.rows::<4>(tile),
                3 => self.rows::<3>(tile),
                2 => self.rows::<2>(tile),
                1 => self.rows::<1>(tile),
                _ => super::scalar_tile(tile),
            }
        }

        fn rows<const R: usize>(self, tile: Tile<'_>) {
            const { assert!(R <= MR) };
            // The only `unsafe` of this module: calling a function compiled for
            // AVX-512 VNNI, sound because `self` exists only where the CPU has it.
            #[allow(unsafe_code)]
            // SAFETY: `Vnni` is constructed only by `detect`, after the runtime check
            // of every feature `tile_rows` enables.
            unsafe {
                tile_rows::<R>(tile)
            }
        }
    }

    /// `R` rows against one panel: `R × 2` accumulators of 16 sums in registers over the
    /// whole row, then scaled to `f32` with the bias.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn tile_rows<const R: usize>(mut tile: Tile<'_>) {
        let kq = tile.kq;
        let rows: [&[u32]; R] = std::array::from_fn(|r| &tile.quads[r * kq..(r + 1) * kq]);
        let (vectors, _) = tile.panel.as_chunks::<2>();
        let vectors = &vectors[..kq];
        let mut acc = [[_mm512_setzero_si512(); 2]; R];
        for (q, [low, high]) in vectors.iter().enumerate() {
            let ahead = tile.panel.as_ptr().wrapping_add(2 * q + PREFETCH_AHEAD);
            prefetch(ahead);
            prefetch(ahead.wrapping_add(1));
            let low: __m512i = cast(*low);
            let high: __m512i = cast(*high);
            for (acc, row) in acc.iter_mut().zip(&rows) {
                let a = _mm512_set1_epi32(row[q] as i32);
                acc[0] = _mm512_dpbusd_epi32(acc[0], a, low);
                acc[1] = _mm512_dpbusd_epi32(acc[1], a, high);
            }
        }
        for (r, [low, high]) in acc.into_iter().enumerate() {
            let low: [i32; 16] = cast(low);
            let high: [i32; 16] = cast(high);
            tile.finish(r, |c| if c < 16 { low[c] } else { high[c - 16] });
        }
        debug_assert_eq!(NR, 32);
    }
}

impl CustomOp1 for Int8Panels {
    fn name(&self) -> &'static str {
        "int8-panels-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, shape) = super::ops::rows_of("int8-panels-matmul", storage, layout, self.k, self.n)?;
        Ok((CpuStorage::F32(self.matmul(x)), shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    use super::super::int8::test_values as values;

    #[test]
    fn bytes_round_half_to_even_as_the_float_rounding_does() {
        // Every step of a quarter over the range, ties included (0.5 → 0, 1.5 → 2).
        for i in -127 * 4..=255 * 4 {
            let v = i as f32 / 4.0;
            let want = v.round_ties_even() as i32;
            let got = round_to_byte(v);
            if v < 0.0 {
                assert_eq!(i32::from(got as i8), want, "{v}");
            } else {
                assert_eq!(i32::from(got), want, "{v}");
            }
        }
    }

    #[test]
    fn products_match_float32_within_the_quantization_error() -> Result<()> {
        for (m, n, k) in [
            (1, 4, 4),
            (3, 32, 64),
            (5, 70, 64),
            (8, 40, 512),
            (17, 64, 384),
            (70, 33, 2048),
            (129, 96, 16),
        ] {
            let x = Tensor::from_vec(values(m * k, 7 + m as u64), (m, k), &Device::Cpu)?;
            let w = Tensor::from_vec(values(n * k, 11 + n as u64), (n, k), &Device::Cpu)?.to_dtype(DType::F16)?;
            let b = Tensor::from_vec(values(n, 13), n, &Device::Cpu)?;
            let exact = x.matmul(&w.to_dtype(DType::F32)?.t()?)?.broadcast_add(&b)?;
            let got = Int8Panels::quantize(&w, Some(&b))?.forward(&x)?;
            assert_eq!(got.dims(), &[m, n]);
            // A step per row: the activations' range (with 0) in 255, the weights' largest
            // magnitude in 127.
            let x_steps = |v: &[f32]| {
                let (low, high) = v.iter().fold((0f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
                vec![(high - low) / 255.0; v.len()]
            };
            let w_steps = |v: &[f32]| vec![v.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0; v.len()];
            super::super::int8::assert_within_quantization_error(&x, &w, &exact, &got, (x_steps, w_steps), 1e-4)?;
        }
        Ok(())
    }

    #[test]
    fn the_vector_kernel_sums_as_the_reference_does() -> Result<()> {
        if !fast() {
            eprintln!("SKIPPED: this CPU has no AVX-512 VNNI; only the scalar kernel runs here");
            return Ok(());
        }
        let (n, k) = (64, 256);
        let w = Tensor::from_vec(values(n * k, 5), (n, k), &Device::Cpu)?;
        let panels = Int8Panels::quantize(&w, None)?;
        for m in 1..=MR + 1 {
            let x = values(m * k, 3 + m as u64);
            let rows = Rows::of(&x, k);
            let kq = k / 4;
            let mut outs = [vec![0f32; m * n], vec![0f32; m * n]];
            for (kernel, out) in [Kernel::Scalar, Kernel::detect()].into_iter().zip(&mut outs) {
                for (p, panel) in panels.panels.chunks_exact(kq * 2).enumerate() {
                    for start in (0..m).step_by(MR) {
                        let r = MR.min(m - start);
                        kernel.run(Tile {
                            quads: &rows.quads[start * kq..(start + r) * kq],
                            kq,
                            scales: &rows.scales[start..start + r],
                            zeros: &rows.zeros[start..start + r],
                            panel,
                            w_scales: &panels.scales[p * NR..(p + 1) * NR],
                            w_sums: &panels.sums[p * NR..(p + 1) * NR],
                            bias: &panels.bias[p * NR..(p + 1) * NR],
                            out: &mut out[start * n..],
                            stride: n,
                            column: p * NR,
                        });
                    }
                }
            }
            // The same integer sums: the same floats.
            assert_eq!(outs[0], outs[1], "{m} rows");
        }
        Ok(())
    }

    #[test]
    fn extremes_and_zero_rows_quantize_within_range() {
        let mut w = [0i8; 4];
        assert!(quantize_symmetric(&[f32::MAX, -f32::MAX, 1.0, 0.0], &mut w).is_finite());
        assert_eq!(w, [127, -127, 0, 0]);
        assert_eq!(quantize_symmetric(&[0.0; 4], &mut w), 0.0);
        assert_eq!(w, [0; 4]);
        // An infinite or NaN weight cannot produce −128.
        quantize_symmetric(&[f32::INFINITY, f32::NAN, -2.0, 2.0], &mut w);
        assert!(w.iter().all(|&v| v != i8::MIN));

        let mut a = [0u8; 4];
        // GELU's outputs: the whole range in 256 steps, 0 exact.
        let (scale, zero) = quantize_affine(&[-0.17, 0.0, 1.0, 0.5], &mut a);
        assert_eq!((a[0], a[1], a[2]), (0, zero as u8, 255));
        assert!((scale * (f32::from(a[3]) - zero as f32) - 0.5).abs() <= scale / 2.0);
        // A constant row is exact; a row of zeros is zeros.
        let (scale, zero) = quantize_affine(&[2.0; 4], &mut a);
        assert_eq!((a, zero), ([255; 4], 0));
        assert!((scale * 255.0 - 2.0).abs() < 1e-6);
        assert_eq!(quantize_affine(&[0.0; 4], &mut a), (0.0, 0));
        assert_eq!(a, [0; 4]);
        // An infinite range gives no finite scale: the row becomes zeros (NaN among
        // them too, as the cast saturates), never a panic or a wrapped byte.
        a = [7; 4];
        let (scale, zero) = quantize_affine(&[f32::INFINITY, f32::NAN, -2.0, 2.0], &mut a);
        assert!(!scale.is_finite());
        assert_eq!((a, zero), ([0; 4], 0));
    }

    #[test]
    fn bad_shapes_are_refused() -> Result<()> {
        let w = Tensor::zeros((4, 6), DType::F32, &Device::Cpu)?;
        assert!(Int8Panels::quantize(&w, None).is_err());
        let w = Tensor::zeros((4, 8), DType::F32, &Device::Cpu)?;
        assert!(Int8Panels::quantize(&w, Some(&Tensor::zeros(3, DType::F32, &Device::Cpu)?)).is_err());
        let p = Int8Panels::quantize(&w, None)?;
        assert!(p.forward(&Tensor::zeros((2, 4), DType::F32, &Device::Cpu)?).is_err());
        assert!(p.forward(&Tensor::zeros((2, 8), DType::F16, &Device::Cpu)?).is_err());
        Ok(())
    }
}
