//! The Q8_0 decode matvec (shaders/matmul/matvec_q8.wgsl) and its chained form: a matvec can
//! write its output already quantised to int8 blocks (QOUT) for the next one, which then reads
//! them (XIN) instead of quantising its f32 input itself. Self-quantising, every workgroup
//! first turns the whole input into int8 blocks (for a 12288-long SwiGLU input: 96 KB read and
//! 12288 exponentials per workgroup) behind a barrier before its first weight load; chained,
//! the producer's workgroups quantise only their own rows once, and the consumer's stream
//! weights from their first instruction.
//!
//! A quantised vector of K values (`quantised_len`) is K / 32 blocks of eight u32 words of
//! int8 values, then the blocks' f32 scales, then their f32 sums of squares of the un-normed
//! values (for a consumer that folds an RMSNorm), each section padded to whole vec4s.

use crate::error::{Error, Result};
use crate::gpu::kernels::{grid, matvec_params};
use crate::gpu::{GpuBuffer, GpuMatrix, Kernels, MatFlags, Op};

/// u32 words of a quantised vector of `k` values (`k` a multiple of 32).
pub fn quantised_len(k: usize) -> usize {
    let nb = k / 32;
    8 * nb + 8 * nb.div_ceil(4)
}

/// What a Q8_0 matvec reads.
#[derive(Clone, Copy)]
pub enum Q8Input<'a> {
    /// f32 values at `x_off`, optionally RMS-normed with the weight `norm.0` (quantised by each
    /// workgroup when int8 activations are on)
    F32 {
        x: &'a GpuBuffer,
        x_off: usize,
        norm: Option<(&'a GpuBuffer, f32)>,
    },
    /// a vector the previous matvec quantised (`QuantOut`); `norm_eps`: it was normed with
    /// the weight folded in, and the output is divided by its RMS (eps added)
    Quantised {
        q: &'a GpuBuffer,
        norm_eps: Option<f32>,
    },
}

/// What a chained Q8_0 matvec also writes, quantised, into its `QuantOut` buffer.
#[derive(Clone, Copy)]
pub enum QuantOut<'a> {
    /// its (final, accumulated) output times the next RMSNorm's weight, with sums of squares
    Normed(&'a GpuBuffer, &'a GpuBuffer),
    /// silu(gate) * up of a stacked gate | up matrix (halves of equal rows)
    SwiGlu(&'a GpuBuffer),
}

/// One phase of [`Kernels::matvec_q8_phases`]: y[y_off..] (+)= W x for Q8_0 `w` and the
/// quantised `input`, the output also quantised into `out` (which the next phase reads).
#[derive(Clone, Copy)]
pub struct ChainPhase<'a> {
    pub w: &'a GpuMatrix,
    pub input: &'a GpuBuffer,
    /// the input was normed with the weight folded in: divide by its RMS (eps added)
    pub norm_eps: Option<f32>,
    pub y: &'a GpuBuffer,
    pub y_off: usize,
    pub accumulate: bool,
    pub out: Option<QuantOut<'a>>,
}

/// Most phases one dispatch takes.
pub const MAX_PHASES: usize = 4;

/// Most rows of a phased dispatch's tile (matvec_q8_phases.wgsl's `yo`).
const PHASE_TILE_MAX: u32 = 256;

// matvec_q8_phases.wgsl's per-phase pipeline constants
const PHASE_K: [&str; MAX_PHASES] = ["K_0", "K_1", "K_2", "K_3"];
const PHASE_RPW: [&str; MAX_PHASES] = ["RPW_0", "RPW_1", "RPW_2", "RPW_3"];
const PHASE_ACC: [&str; MAX_PHASES] = ["ACC_0", "ACC_1", "ACC_2", "ACC_3"];
const PHASE_RMS: [&str; MAX_PHASES] = ["RMS_0", "RMS_1", "RMS_2", "RMS_3"];
const PHASE_QOUT: [&str; MAX_PHASES] = ["QOUT_0", "QOUT_1", "QOUT_2", "QOUT_3"];
const PHASE_PRE: [&str; MAX_PHASES] = ["PRE_0", "PRE_1", "PRE_2", "PRE_3"];

impl QuantOut<'_> {
    fn buffer(&self) -> &GpuBuffer {
        match self {
            QuantOut::Normed(q, _) | QuantOut::SwiGlu(q) => q,
        }
    }

    /// QOUT of matvec_q8.wgsl, and the multiple the rows per workgroup must be
    fn mode(&self) -> (u32, u32) {
        match self {
            QuantOut::Normed(..) => (1, 32),
            QuantOut::SwiGlu(_) => (2, 64),
        }
    }
}

/// The length of the vector a matvec of `w` writes quantised into `out` (0 without): the next
/// matvec's K; its buffer must hold it.
fn quantised_out_len(out: Option<&QuantOut>, w: &GpuMatrix) -> Result<usize> {
    let len = match out {
        Some(QuantOut::SwiGlu(_)) => w.rows / 2,
        Some(QuantOut::Normed(..)) => w.rows,
        None => return Ok(0),
    };
    if out.is_some_and(|o| o.buffer().len < quantised_len(len)) {
        return Err(Error::Gpu("quantised output buffer too short".into()));
    }
    Ok(len)
}

impl Kernels {
    /// Whether `w` can be a link of a chain of quantised matvecs: Q8_0 with int8 activations,
    /// one chunk, and, writing `out`, rows in whole blocks per workgroup.
    pub fn q8_chain_fits(&self, w: &GpuMatrix, out: Option<&QuantOut>) -> bool {
        if !self.q8_dot(w) || w.chunks.len() != 1 {
            return false;
        }
        let Some(out) = out else { return true };
        // a block's eight lanes reduce by subgroup shuffles
        if self.ctx.info.subgroup_min_size < 8 {
            return false;
        }
        let (_, multiple) = out.mode();
        let (_, rpw, wg) = self.chain_constants(w, MatFlags::default(), false, multiple);
        w.rows.is_multiple_of(multiple as usize)
            && rpw.is_multiple_of(multiple)
            && rpw <= 128
            && rpw <= 4 * wg
    }

    /// y[y_off..] (+)= W x for Q8_0 `w` (matvec_q8.wgsl), x as `input` says; with `out`, the
    /// output also goes quantised into `out`'s buffer for the next matvec of a chain
    /// (needs [`Kernels::q8_chain_fits`]).
    pub fn matvec_q8_linked(
        &self,
        w: &GpuMatrix,
        input: Q8Input,
        y: &GpuBuffer,
        y_off: usize,
        f: MatFlags,
        out: Option<QuantOut>,
    ) -> Result<Vec<Op>> {
        let up = f.swiglu_up_off.unwrap_or(0);
        let (x, x_off, eps, rms) = match input {
            Q8Input::F32 { x, x_off, norm } => {
                (x, x_off, norm.map_or(0, |n| n.1.to_bits()), norm.is_some())
            }
            Q8Input::Quantised { q, norm_eps } => {
                (q, 0, norm_eps.map_or(0, f32::to_bits), norm_eps.is_some())
            }
        };
        let quantised_in = matches!(input, Q8Input::Quantised { .. });
        if !self.ctx.has_subgroups() || !x_off.is_multiple_of(4) || !up.is_multiple_of(4) {
            return Err(Error::Gpu(
                "Q8_0 matvec needs subgroup operations and 4-aligned inputs".into(),
            ));
        }
        let chained = quantised_in || out.is_some();
        if chained && !self.q8_chain_fits(w, out.as_ref()) {
            return Err(Error::Gpu(format!(
                "a {}x{} matrix cannot be a link of a quantised matvec chain",
                w.rows, w.cols
            )));
        }
        if quantised_in && (f.swiglu_up_off.is_some() || x.len < quantised_len(w.cols)) {
            return Err(Error::Gpu(
                "a quantised input holds its SwiGLU already and needs its whole length".into(),
            ));
        }
        let (qout_mode, multiple) = out.as_ref().map_or((0, 1), QuantOut::mode);
        let (mut consts, rows_per_wg, _) = self.chain_constants(w, f, rms, multiple);
        consts.push(("XIN", if quantised_in { 1.0 } else { 0.0 }));
        consts.push(("QOUT", qout_mode as f64));
        consts.push(("NOTAIL", self.debug.q8_no_tail() as u32 as f64));
        consts.push(("EARLY", self.tuning.q8_early as u32 as f64));
        // the quantised output's length: the next matvec's K
        let qlen = quantised_out_len(out.as_ref(), w)?;
        // the norm weight: the next RMSNorm's when QOUT folds it, else this matvec's own
        let g = match (out, input) {
            (Some(QuantOut::Normed(_, g)), _) => g,
            (_, Q8Input::F32 { norm: Some(n), .. }) => n.0,
            _ => x,
        };
        let qout = out.as_ref().map_or(&self.unused, |o| &o.buffer().buffer);
        w.chunks
            .iter()
            .map(|c| {
                let mut params = matvec_params(c.rows, w, x_off, y_off, c.row0, up, eps);
                params.extend([w.scale_stride as u32, 0, 0, 0, qlen as u32, 0]);
                let wg = (c.rows as u32).div_ceil(rows_per_wg);
                let scales = c
                    .scales
                    .as_ref()
                    .ok_or_else(|| Error::Gpu("Q8_0 chunk without scales".into()))?;
                let mut op = self.op(
                    "matvec_q8",
                    &consts,
                    &params,
                    false,
                    // binding 6: the quantised input (x when none; no MoE route here)
                    &[
                        &c.buffer,
                        &x.buffer,
                        &y.buffer,
                        &g.buffer,
                        scales,
                        &x.buffer,
                        qout,
                        // MOE_SUM's buffers unused (read-only: x; writable: the dummy)
                        &x.buffer,
                        &self.unused,
                        &self.unused,
                    ],
                    Box::new(move |_| grid(wg)),
                )?;
                let link = match (quantised_in, qout_mode) {
                    (false, 0) => "",
                    (true, 0) => " (quantised in)",
                    (false, _) => " (quantised out)",
                    (true, _) => " (quantised in, out)",
                };
                op.detail = format!("{}x{}{link}", c.rows, w.cols);
                Ok(op)
            })
            .collect()
    }

    /// The pipeline constants, rows per workgroup and invocations per workgroup of a chain
    /// link: the Q8_0 defaults, or the wide shape (`Tuning::q8_wide_wg`) where those leave
    /// fewer than `q8_min_wgs` workgroups and the adapter takes it.
    fn chain_constants(
        &self,
        w: &GpuMatrix,
        f: MatFlags,
        rms: bool,
        multiple: u32,
    ) -> (Vec<(&'static str, f64)>, u32, u32) {
        let t = &self.tuning;
        let rows = w.rows as u32;
        let (c, rpw) = self.subgroup_matvec_shape(
            w,
            f,
            t.q8_wg,
            t.q8_rows,
            rms,
            rows,
            1,
            multiple,
            t.q8_ksplit,
        );
        let wide = t.q8_wide_wg;
        let limits = &self.ctx.limits;
        let fits = wide > t.q8_wg
            && wide <= limits.max_compute_invocations_per_workgroup
            && wide <= limits.max_compute_workgroup_size_x
            // (matvec_q8.wgsl's per-subgroup sums hold 64)
            && wide / self.ctx.info.subgroup_min_size.max(1) <= 64;
        if !fits || rows.div_ceil(rpw) >= t.q8_min_wgs {
            return (c, rpw, t.q8_wg);
        }
        let (c, rpw) = self.subgroup_matvec_shape(
            w,
            f,
            wide,
            t.q8_wide_rows,
            rms,
            rows,
            1,
            multiple,
            t.q8_wide_ksplit,
        );
        (c, rpw, wide)
    }

    /// Rows and invocations per workgroup of `w` as a chain link writing `out` (tests check
    /// which shape ran).
    pub fn q8_link_shape(&self, w: &GpuMatrix, out: Option<&QuantOut>) -> (u32, u32) {
        let multiple = out.map_or(1, |o| o.mode().1);
        let (_, rpw, wg) = self.chain_constants(w, MatFlags::default(), false, multiple);
        (rpw, wg)
    }

    /// Rows per workgroup of `w` as a phase of [`Kernels::matvec_q8_phases`] writing `out`:
    /// the fewest row groups that make whole output blocks, at most 128 rows (its workgroup
    /// array); None where `w` cannot be a phase.
    pub fn phase_rows_per_wg(&self, w: &GpuMatrix, out: Option<&QuantOut>) -> Option<u32> {
        let min_sg = self.ctx.info.subgroup_min_size;
        if !self.q8_dot(w) || w.chunks.len() != 1 || (out.is_some() && min_sg < 8) || w.cols > 12288
        {
            return None;
        }
        let multiple = out.map_or(1, |o| o.mode().1);
        let (wg, rows) = self.phase_shape();
        let base = (wg / min_sg.max(1)).max(1) * rows;
        let rpw = (1..=4)
            .map(|g| base * g)
            .find(|r| r.is_multiple_of(multiple))?;
        (rpw <= 128 && w.rows.is_multiple_of(multiple as usize)).then_some(rpw)
    }

    /// Rows per tile of `w` as a phase writing `out`: `phase_rows_per_wg`, or where the
    /// persistent dispatch takes whole shares (`Tuning::q8_persist_tile`), the fewest whole
    /// multiples of it that cover a workgroup's share of the rows, at most `PHASE_TILE_MAX`.
    fn phase_tile_rows(&self, w: &GpuMatrix, out: Option<&QuantOut>) -> Option<u32> {
        let unit = self.phase_rows_per_wg(w, out)?;
        let t = &self.tuning;
        if t.q8_persist == 0 || !t.q8_persist_tile {
            return Some(unit);
        }
        let share = (w.rows as u32).div_ceil(t.q8_persist).div_ceil(unit) * unit;
        Some(share.min(PHASE_TILE_MAX / unit * unit).max(unit))
    }

    /// Invocations per workgroup and rows per subgroup of the phased dispatch: its own shape
    /// when persistent (few workgroups, each wide), else the chain links'.
    fn phase_shape(&self) -> (u32, u32) {
        let t = &self.tuning;
        let max = self.ctx.limits.max_compute_invocations_per_workgroup;
        if t.q8_persist > 0 && t.q8_persist_wg <= max {
            (t.q8_persist_wg, t.q8_persist_rows)
        } else {
            (t.q8_wg, t.q8_rows)
        }
    }

    /// Chained Q8_0 matvecs as one dispatch (matvec_q8_phases.wgsl): the workgroups of each
    /// phase wait on the device for the previous phase's, through the four u32 counters at
    /// `cbase` of `counters` (zero before the first use; the dispatch leaves them zero).
    pub fn matvec_q8_phases(
        &self,
        phases: &[ChainPhase],
        counters: &GpuBuffer,
        cbase: usize,
    ) -> Result<Op> {
        if phases.is_empty() || phases.len() > MAX_PHASES || counters.len < cbase + MAX_PHASES {
            return Err(Error::Gpu(format!(
                "a phased matvec takes 1 to {MAX_PHASES} phases and room for its counters"
            )));
        }
        let mut params = Vec::with_capacity(MAX_PHASES * 16 + 4);
        let mut rpws = Vec::with_capacity(phases.len());
        let mut wg0 = 0u32;
        for (i, ph) in phases.iter().enumerate() {
            // each phase reads what the one before wrote, and nothing reads a vector twice
            let chained = i == 0
                || phases[i - 1]
                    .out
                    .is_some_and(|o| std::ptr::eq(o.buffer(), ph.input));
            let rpw = self.phase_tile_rows(ph.w, ph.out.as_ref());
            let (Some(rpw), true) = (rpw, chained) else {
                return Err(Error::Gpu(format!(
                    "phase {i} ({}x{}) is not a link of the chain",
                    ph.w.rows, ph.w.cols
                )));
            };
            // (the workgroup's copy of the input holds K <= 12288)
            if ph.input.len < quantised_len(ph.w.cols) || ph.w.cols > 12288 {
                return Err(Error::Gpu("a phase's quantised input is too short".into()));
            }
            let qlen = quantised_out_len(ph.out.as_ref(), ph.w)?;
            rpws.push(rpw);
            let wgs = (ph.w.rows as u32).div_ceil(rpw);
            params.extend([
                ph.w.rows as u32,
                ph.w.stride as u32,
                ph.w.scale_stride as u32,
                rpw,
                wg0,
                wgs,
                qlen as u32,
                ph.norm_eps.map_or(0, f32::to_bits),
                ph.y_off as u32,
            ]);
            params.extend([0; 7]);
            wg0 += wgs;
        }
        params.resize(MAX_PHASES * 16, 0);
        params.extend([phases.len() as u32, cbase as u32, 0, 0]);
        // bindings (matvec_q8_phases.wgsl): weights 1.., scales 5.., outputs 9.., the
        // quantised vectors 13.. (phase i reads q(i), writes q(i + 1)), norm weights 18..,
        // counters 22; a pipeline of n phases declares only its phases' bindings
        let n = phases.len() as u32;
        let mut bufs: Vec<(u32, &wgpu::Buffer)> = Vec::new();
        for (i, ph) in (0u32..).zip(phases) {
            let c = &ph.w.chunks[0];
            let scales = c
                .scales
                .as_ref()
                .ok_or_else(|| Error::Gpu("Q8_0 chunk without scales".into()))?;
            bufs.extend([(1 + i, &c.buffer), (5 + i, scales), (9 + i, &ph.y.buffer)]);
            bufs.push((
                14 + i,
                ph.out.as_ref().map_or(&self.unused, |o| &o.buffer().buffer),
            ));
            // (a read-only stand-in where unused: the quantised vectors are bound writable)
            bufs.push((
                18 + i,
                match ph.out {
                    Some(QuantOut::Normed(_, g)) => &g.buffer,
                    _ => &c.buffer,
                },
            ));
        }
        bufs.push((13, &phases[0].input.buffer));
        bufs.push((22, &counters.buffer));
        debug_assert!(bufs.len() as u32 == 5 * n + 2);
        let (wg, rows) = self.phase_shape();
        let persist = self.tuning.q8_persist;
        let mut consts = vec![
            ("ROWS", rows as f64),
            ("WG", wg as f64),
            ("N_PHASES", phases.len() as f64),
            ("PERSIST", if persist > 0 { 1.0 } else { 0.0 }),
            ("PMODE", self.debug.persist_mode as f64),
            (
                "EARLY",
                if self.tuning.q8_persist_early {
                    1.0
                } else {
                    0.0
                },
            ),
        ];
        for (i, (ph, rpw)) in phases.iter().zip(&rpws).enumerate() {
            let mode = ph.out.as_ref().map_or(0, |o| o.mode().0);
            let flag = |b: bool| if b { 1.0 } else { 0.0 };
            consts.extend([
                (PHASE_K[i], ph.w.cols as f64),
                (PHASE_RPW[i], *rpw as f64),
                (PHASE_ACC[i], flag(ph.accumulate)),
                (PHASE_RMS[i], flag(ph.norm_eps.is_some())),
                (PHASE_QOUT[i], mode as f64),
                (PHASE_PRE[i], self.tuning.q8_prefetch as f64),
            ]);
        }
        if let Some(sg) = self
            .ctx
            .fixed_subgroup_size()
            .filter(|_| self.tuning.q8_fixed_sg)
        {
            consts.push(("SGC", sg as f64));
        }
        let mut op = self.op_at(
            "matvec_q8_phases",
            &consts,
            &params,
            false,
            &bufs,
            Box::new(move |_| grid(if persist > 0 { persist } else { wg0 })),
        )?;
        op.detail = phases
            .iter()
            .map(|ph| format!("{}x{}", ph.w.rows, ph.w.cols))
            .collect::<Vec<_>>()
            .join(" + ");
        Ok(op)
    }
}
