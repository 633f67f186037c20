//! What a decode step's weight reads alone cost on this device: the step's matrices as plain
//! reads (`stream_read.wgsl`), one dispatch per matrix behind a barrier as the engine records
//! them, or one persistent dispatch whose workgroups meet at a device counter between
//! matrices. `omni bench-stream` prints the times; the gap between them and the real step is
//! what our kernels add, and the gap between the two structures is what a persistent decode
//! kernel (b068) could gain at most.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::gpu::buffers::as_bytes;
use crate::gpu::{GpuBuffer, GpuContext, Kernels, StepDims};

/// How many workgroups read one op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Groups {
    /// this many (fewer where the op has fewer words than invocations)
    Fixed(u32),
    /// one per this many bytes of the op
    PerBytes(u64),
}

/// One way of reading the step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamVariant {
    /// invocations per workgroup
    pub wg: u32,
    /// 16-byte loads each invocation issues before using any (rows read ahead: the words of
    /// the next row loaded before a wait, 1-4)
    pub loads: u32,
    pub groups: Groups,
    /// one dispatch for the whole step, device counters between ops
    pub persistent: bool,
    /// (persistent) the next op's first loads issued before the wait
    pub ahead: bool,
    /// (persistent) one dispatch per layer, the attention's read in one of its own, instead
    /// of one for the step (the caller's `breaks`)
    pub layered: bool,
    /// 0: the plain stream (unless `rows_per_op`); else the Q8_0 matvec's pattern over rows
    /// of this many 16-byte words (stream_read.wgsl's ROWW)
    pub row_words: u32,
    /// (rows) each op's own row width instead (the caller's `op_rows`; stream_read.wgsl's
    /// ROWOP): a whole step's matrices, whose rows differ in length
    pub rows_per_op: bool,
    /// (rows) stream_read.wgsl's ROWX: bits adding the scales (1), the input (2), the math
    /// (4), the scales and x's scales through a u32 binding of their own (8), the scales
    /// interleaved with the values in superblocks of 8 blocks (16, with 1), half-block lanes:
    /// one 16-byte word per lane per trip, lanes on consecutive words (32), the two words read
    /// ahead of a wait used in place of the first row's first trip (64: ahead, 2 loads)
    pub row_extra: u32,
    /// (rows) the subgroup size and the two most common row widths fixed at pipeline creation
    /// (stream_read.wgsl's SGC, RWA, RWB): a row's loop unrolled, as the engine's matvec is
    pub unrolled: bool,
    /// 16-byte words of workgroup memory declared (stream_read.wgsl's SHMEM; 0: one)
    pub shmem_words: u32,
    /// (persistent) 16-byte words of a vector written before and copied after each wait
    /// (stream_read.wgsl's HAND; at most `MAX_HAND`)
    pub handover_words: u32,
}

impl StreamVariant {
    /// One dispatch per op, plain reads: the base the other variants change fields of.
    pub fn chain(wg: u32, loads: u32, groups: Groups) -> Self {
        StreamVariant {
            wg,
            loads,
            groups,
            persistent: false,
            ahead: false,
            layered: false,
            row_words: 0,
            rows_per_op: false,
            unrolled: false,
            row_extra: 0,
            shmem_words: 0,
            handover_words: 0,
        }
    }
}

impl StreamVariant {
    /// Each op's row width in 16-byte words (0: a plain stream): the caller's `op_rows` where
    /// the variant reads rows per op, else its own width for all `ops`.
    fn op_row_words(&self, op_rows: &[u32], ops: usize) -> Vec<u32> {
        if self.rows_per_op {
            op_rows.to_vec()
        } else {
            vec![self.row_words; ops]
        }
    }

    /// 16-byte words a row of `w` words of values takes in a slab: with the block scales, one
    /// scale word per 16 words of values after the slab's rows.
    fn row_unit(&self, w: u32) -> u64 {
        w as u64
            + if self.row_extra & 1 != 0 {
                w as u64 / 16
            } else {
                0
            }
    }

    /// Why the row flags cannot go together, if they cannot: half-block lanes read the
    /// separate scale array, and the words read ahead in place are the first trip of a
    /// block-per-lane row, two loads before a persistent wait.
    pub fn row_flags_conflict(&self) -> Option<&'static str> {
        if self.row_extra & 48 == 48 {
            return Some(
                "half-block lanes (c) read the separate scale array, not interleaved scales (i)",
            );
        }
        if self.row_extra & 64 != 0
            && (self.row_extra & 48 != 0 || !self.ahead || !self.persistent || self.loads != 2)
        {
            return Some(
                "words read ahead in place (p) need mode ahead, 2 loads, and blocks per lane with separate scales (no c, no i)",
            );
        }
        None
    }
}

/// The most 16-byte words a persistent variant hands over (32 KB of workgroup memory).
pub const MAX_HAND: u32 = 2048;

impl std::fmt::Display for StreamVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match (self.persistent, self.ahead, self.layered) {
            (false, _, _) => "dispatch per op",
            (true, false, false) => "persistent",
            (true, true, false) => "persistent, ahead",
            (true, false, true) => "per layer",
            (true, true, true) => "per layer, ahead",
        };
        let groups = match self.groups {
            Groups::Fixed(n) => format!("{n} wgs"),
            Groups::PerBytes(b) => format!("1 wg / {} KB", b / 1024),
        };
        let shape = match (self.row_words, self.rows_per_op) {
            (0, false) => format!("{} loads", self.loads),
            (w, _) => {
                format!(
                    "rows of {}{}{}{}",
                    if self.rows_per_op {
                        "K B".to_string()
                    } else {
                        format!("{} B", w * 16)
                    },
                    if self.row_extra & 1 != 0 {
                        " +scales"
                    } else {
                        ""
                    },
                    if self.row_extra & 2 != 0 { " +x" } else { "" },
                    if self.row_extra & 4 != 0 { " +dot" } else { "" },
                ) + if self.row_extra & 16 != 0 {
                    " interleaved"
                } else {
                    ""
                } + if self.row_extra & 32 != 0 {
                    " half-block lanes"
                } else {
                    ""
                } + if self.row_extra & 64 != 0 {
                    " (words ahead used in place)"
                } else {
                    ""
                } + if self.unrolled { " unrolled" } else { "" }
                    + if self.row_extra & 8 != 0 {
                        " (own bindings)"
                    } else {
                        ""
                    }
                    + &if self.shmem_words > 1 {
                        format!(" +{} KB shared", self.shmem_words / 64)
                    } else {
                        String::new()
                    }
            }
        };
        let hand = match self.handover_words {
            0 => String::new(),
            w => format!(", {} KB handed over", w * 16 / 1024),
        };
        f.pad(&format!(
            "{mode}, {} inv x {shape}, {groups}{hand}",
            self.wg
        ))
    }
}

/// One checked step (`StreamProbe::checksum`): the xor of every word read, whether a wait gave
/// up, and how many arrivals the persistent counter saw (every op but a segment's last, times
/// the workgroups).
#[derive(Clone, Copy, Debug)]
pub struct ProbeRun {
    pub sum: [u32; 4],
    pub gave_up: bool,
    pub arrivals: u32,
}

/// A step's time read this way (best of the passes), and whether a persistent dispatch's wait
/// gave up (its workgroups were not all resident: the time is then meaningless).
#[derive(Clone, Copy, Debug)]
pub struct StreamTiming {
    pub step_s: f64,
    pub gave_up: bool,
}

/// The probe's buffers: `bytes` of random words that ops are laid out in, a checksum word per
/// workgroup, and the persistent dispatch's counters.
pub struct StreamProbe {
    ctx: std::sync::Arc<GpuContext>,
    src: GpuBuffer,
    words: u64,
    sink: GpuBuffer,
    sync: GpuBuffer,
    handed: GpuBuffer,
}

/// The most workgroups one op may use (one grid row; the sink holds one word each).
const MAX_GROUPS: u32 = 65535;

/// (offset, length) in 16-byte words of each op, placed one after another and starting again
/// at 0 where an op would pass the end, so every op reads bytes no recent op read (the buffer
/// is far larger than any cache: the caller sees to it).
pub fn layout(op_bytes: &[u64], buffer_words: u64) -> Result<Vec<(u64, u64)>> {
    let mut at = 0u64;
    let mut out = Vec::with_capacity(op_bytes.len());
    for &b in op_bytes {
        let len = b.div_ceil(16).max(1);
        if len > buffer_words {
            return Err(Error::Gpu(format!(
                "a read of {b} bytes does not fit the probe's {} bytes",
                buffer_words * 16
            )));
        }
        if at + len > buffer_words {
            at = 0;
        }
        out.push((at, len));
        at += len;
    }
    Ok(out)
}

impl StreamProbe {
    /// A probe over `bytes` (capped by one binding) of random words.
    pub fn new(ctx: &std::sync::Arc<GpuContext>, bytes: u64) -> Result<Self> {
        let bytes = bytes.min(ctx.max_binding()).min(ctx.limits.max_buffer_size) / 16 * 16;
        if bytes < 16 {
            return Err(Error::Gpu(
                "the stream probe needs at least 16 bytes".into(),
            ));
        }
        let src = GpuBuffer::zeros(ctx, (bytes / 4) as usize, "stream-src")?;
        let k = Kernels::new(ctx);
        let op = k.fill_random(&src.buffer, src.len, 1.0, 0x5eed, 0.0)?;
        k.run([&op], StepDims { t: 1, pos0: 0 })?;
        let probe = StreamProbe {
            ctx: ctx.clone(),
            words: bytes / 16,
            src,
            // a checksum per workgroup, the counters, two halves of the handed-over vector
            sink: GpuBuffer::zeros(ctx, 4 * MAX_GROUPS as usize, "stream-sink")?,
            sync: GpuBuffer::zeros(ctx, 4, "stream-sync")?,
            handed: GpuBuffer::zeros(ctx, 2 * 4 * MAX_HAND as usize, "stream-handed")?,
        };
        ctx.wait()?;
        Ok(probe)
    }

    /// Length of the probe's buffer in 16-byte words.
    pub fn words(&self) -> u64 {
        self.words
    }

    /// Replace the buffer's first words with `words` (tests: known data to check sums with).
    pub fn write(&self, words: &[u32]) -> Result<()> {
        if words.len() as u64 > self.words * 4 {
            return Err(Error::Gpu(
                "more words than the probe's buffer holds".into(),
            ));
        }
        self.src.write_u32(&self.ctx, 0, words);
        self.ctx.wait()
    }

    /// Workgroups of op `len` words under `v`.
    fn groups(v: &StreamVariant, len: u64) -> u32 {
        let n = match v.groups {
            Groups::Fixed(n) => n as u64,
            Groups::PerBytes(b) => (len * 16).div_ceil(b.max(16)),
        };
        n.clamp(1, (len.div_ceil(v.wg as u64)).max(1))
            .min(MAX_GROUPS as u64) as u32
    }

    /// The most workgroups any op of `ops` takes under `v`: what a persistent dispatch runs
    /// (all resident at once) and how many checksums a step leaves.
    fn max_groups(v: &StreamVariant, ops: &[(u64, u64)]) -> u32 {
        ops.iter().map(|o| Self::groups(v, o.1)).max().unwrap_or(1)
    }

    fn check(&self, v: &StreamVariant, ops: &[(u64, u64)], op_rows: &[u32]) -> Result<()> {
        let max_wg = self.ctx.limits.max_compute_invocations_per_workgroup;
        if v.wg == 0 || v.wg > max_wg || v.loads == 0 || v.loads > 16 {
            return Err(Error::Gpu(format!(
                "stream variant `{v}`: 1..={max_wg} invocations and 1..=16 loads"
            )));
        }
        if ops
            .iter()
            .any(|&(o, l)| o + l > self.words || o + l > u32::MAX as u64)
        {
            return Err(Error::Gpu(
                "a stream op lies outside the probe's buffer".into(),
            ));
        }
        if ops.is_empty() {
            return Err(Error::Gpu("the stream probe needs at least one op".into()));
        }
        if v.handover_words > MAX_HAND || (v.handover_words > 0 && !v.persistent) {
            return Err(Error::Gpu(format!(
                "stream variant `{v}`: a handed-over vector needs a persistent variant and at most {MAX_HAND} words"
            )));
        }
        let sg_max = self.ctx.info.subgroup_max_size.max(1);
        // (a subgroup per row: a workgroup of fewer invocations than a subgroup, or not whole
        // subgroups, would have no row stride or read rows twice)
        // (rows of scales: one scale word per 16 words of values)
        let row_unit = (2 * sg_max).max(16);
        let widths = v.op_row_words(op_rows, ops.len());
        if (v.row_words > 0 || v.rows_per_op)
            && (widths.iter().any(|w| !w.is_multiple_of(row_unit))
                || !v.wg.is_multiple_of(sg_max)
                || !self.ctx.has_subgroups())
        {
            return Err(Error::Gpu(format!(
                "stream variant `{v}`: rows need subgroups, invocations a multiple of {sg_max} and rows a multiple of {row_unit} words"
            )));
        }
        if v.rows_per_op && op_rows.len() != ops.len() {
            return Err(Error::Gpu(format!(
                "stream variant `{v}`: rows per op need a row width for each of the {} ops",
                ops.len()
            )));
        }
        if let Some(why) = v.row_flags_conflict() {
            return Err(Error::Gpu(format!("stream variant `{v}`: {why}")));
        }
        Ok(())
    }

    /// Whether `v`'s checksum can be compared with a reference's: its rows (with their scale
    /// words, where it reads scales) divide every op, since a partial last row is not read.
    /// The reference is a plain stream without scales (every word once), else
    /// [`Self::scales_reference`] (no variant xors the scale words).
    pub fn checkable(v: &StreamVariant, ops: &[(u64, u64)], op_rows: &[u32]) -> bool {
        let widths = v.op_row_words(op_rows, ops.len());
        ops.iter().zip(&widths).all(|(&(_, len), &w)| {
            let unit = v.row_unit(w);
            unit == 0 || len.is_multiple_of(unit)
        })
    }

    /// The variant a variant with the block scales must match: the same rows, workgroups
    /// and dispatches (which words of a slab are values and which its scales depends on the
    /// slabs), with neither the input, the math, a hand-over nor loads ahead. So a variant's
    /// extra work is checked not to change what it reads.
    pub fn scales_reference(v: &StreamVariant) -> StreamVariant {
        StreamVariant {
            row_extra: v.row_extra & (1 | 16 | 32),
            ahead: false,
            unrolled: false,
            handover_words: 0,
            shmem_words: 0,
            ..*v
        }
    }

    /// Records `steps` steps reading `ops` under `v`. A persistent variant makes one dispatch
    /// per segment: a new one starts at each op index in `breaks` (ascending). `op_rows`: each
    /// op's row width in 16-byte words where `v.rows_per_op` (0: a plain stream), else unused.
    fn record(
        &self,
        v: &StreamVariant,
        ops: &[(u64, u64)],
        op_rows: &[u32],
        breaks: &[usize],
        steps: usize,
    ) -> Result<wgpu::CommandBuffer> {
        self.check(v, ops, op_rows)?;
        if breaks.windows(2).any(|w| w[0] >= w[1])
            || breaks.iter().any(|&b| b == 0 || b >= ops.len())
        {
            return Err(Error::Gpu(
                "stream probe breaks must ascend inside the op list".into(),
            ));
        }
        let ctx = &self.ctx;
        let op_widths = v.op_row_words(op_rows, ops.len());
        // UNROLL: the two most common row widths of the ops, the adapter's one subgroup size
        let (sgc, rwa, rwb) = if v.unrolled {
            let mut widths = op_widths.clone();
            widths.retain(|&w| w > 0);
            widths.sort_unstable();
            let mut counts: Vec<(usize, u32)> = widths
                .chunk_by(|a, b| a == b)
                .map(|c| (c.len(), c[0]))
                .collect();
            counts.sort_unstable_by(|a, b| b.cmp(a));
            let w = |i: usize| counts.get(i).map_or(0, |c| c.1);
            (ctx.fixed_subgroup_size().unwrap_or(0), w(0), w(1))
        } else {
            (0, 0, 0)
        };
        let pipeline = ctx.pipelines.get(
            &ctx.device,
            "stream_read",
            &[
                ("SGC", sgc as f64),
                ("RWA", rwa as f64),
                ("RWB", rwb as f64),
                ("WG", v.wg as f64),
                ("LOADS", v.loads as f64),
                ("PERSIST", v.persistent as u32 as f64),
                ("AHEAD", v.ahead as u32 as f64),
                ("ROWW", v.row_words as f64),
                ("ROWX", v.row_extra as f64),
                ("ROWOP", v.rows_per_op as u32 as f64),
                ("SHMEM", v.shmem_words.max(1) as f64),
                ("HAND", v.handover_words as f64),
            ],
        )?;
        let persistent_groups = Self::max_groups(v, ops);
        let groups: Vec<u32> = ops
            .iter()
            .map(|&(_, len)| {
                if v.persistent {
                    persistent_groups
                } else {
                    Self::groups(v, len)
                }
            })
            .collect();
        let table: Vec<u32> = ops
            .iter()
            .zip(&groups)
            .enumerate()
            .flat_map(|(j, (&(off, len), &g))| {
                let row_words = op_widths[j];
                // (rows: whole rows per workgroup, with their scales)
                let rw = v.row_unit(row_words).max(1);
                let per = len.div_ceil(g as u64).div_ceil(rw) * rw;
                [off as u32, len as u32, per as u32, row_words]
            })
            .collect();
        let table_buf = GpuBuffer::from_u32(ctx, &table, "stream-ops")?;
        let bind = |first: u32, count: u32, base: u32| {
            use wgpu::util::DeviceExt;
            let params = ctx
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("stream-params"),
                    contents: as_bytes(&[first, count, base, 0]),
                    usage: wgpu::BufferUsages::UNIFORM,
                });
            let entries = [
                params.as_entire_binding(),
                table_buf.buffer.as_entire_binding(),
                self.src.buffer.as_entire_binding(),
                self.sink.buffer.as_entire_binding(),
                self.sync.buffer.as_entire_binding(),
                self.src.buffer.as_entire_binding(),
                self.handed.buffer.as_entire_binding(),
            ];
            let entries: Vec<wgpu::BindGroupEntry> = entries
                .into_iter()
                .enumerate()
                .map(|(i, resource)| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource,
                })
                .collect();
            ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("stream"),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        };
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        if v.persistent {
            // the counter runs on across a step's segments: each wait's target starts from the
            // arrivals of the segments before (every op but a segment's last one arrives)
            let starts: Vec<usize> = std::iter::once(0).chain(breaks.iter().copied()).collect();
            let mut base = 0u32;
            let segments: Vec<wgpu::BindGroup> = starts
                .iter()
                .enumerate()
                .map(|(i, &first)| {
                    let end = starts.get(i + 1).copied().unwrap_or(ops.len());
                    let group = bind(first as u32, (end - first) as u32, base);
                    base += (end - first - 1) as u32 * persistent_groups;
                    group
                })
                .collect();
            for _ in 0..steps {
                enc.clear_buffer(&self.sync.buffer, 0, None);
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                for group in &segments {
                    pass.set_bind_group(0, group, &[]);
                    pass.dispatch_workgroups(persistent_groups, 1, 1);
                }
            }
        } else {
            let groups: Vec<(wgpu::BindGroup, u32)> = (0..ops.len())
                .map(|j| (bind(j as u32, 1, 0), groups[j]))
                .collect();
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            for _ in 0..steps {
                for (group, n) in &groups {
                    pass.set_bind_group(0, group, &[]);
                    pass.dispatch_workgroups(*n, 1, 1);
                }
            }
        }
        Ok(enc.finish())
    }

    /// The counters after the last submission: arrivals, and whether a wait gave up.
    fn read_sync(&self) -> Result<(u32, bool)> {
        let c = self.sync.read_u32(&self.ctx, 0, 2)?;
        Ok((c[0], c[1] != 0))
    }

    /// Time of one step reading `ops` under `v` (`op_rows`, `breaks`: see `record`): `steps` steps per submission, best of
    /// `passes` submissions after a warm-up, wall clock from submit to completion (a step of
    /// an 8B model takes milliseconds, against tens of microseconds of submit and wait).
    pub fn time(
        &self,
        v: &StreamVariant,
        ops: &[(u64, u64)],
        op_rows: &[u32],
        breaks: &[usize],
        steps: usize,
        passes: usize,
    ) -> Result<StreamTiming> {
        let steps = steps.max(1);
        let mut best = f64::INFINITY;
        let mut gave_up = false;
        for pass in 0..=passes.max(1) {
            let commands = self.record(v, ops, op_rows, breaks, steps)?;
            let t = Instant::now();
            self.ctx.queue.submit([commands]);
            self.ctx.wait()?;
            let s = t.elapsed().as_secs_f64() / steps as f64;
            gave_up |= v.persistent && self.read_sync()?.1;
            if pass > 0 {
                best = best.min(s);
            }
        }
        Ok(StreamTiming {
            step_s: best,
            gave_up,
        })
    }

    /// One step of `ops` under `v`, then the xor of the workgroups' checksums, which is the
    /// xor of every word the ops read (a test compares it with the host's), and whether a
    /// wait gave up.
    pub fn checksum(
        &self,
        v: &StreamVariant,
        ops: &[(u64, u64)],
        op_rows: &[u32],
        breaks: &[usize],
    ) -> Result<ProbeRun> {
        self.check(v, ops, op_rows)?;
        let groups = Self::max_groups(v, ops);
        let clear = {
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            enc.clear_buffer(&self.sink.buffer, 0, None);
            enc.finish()
        };
        self.ctx.queue.submit([clear]);
        let commands = self.record(v, ops, op_rows, breaks, 1)?;
        self.ctx.queue.submit([commands]);
        let (arrivals, gave_up) = self.read_sync()?;
        let mut sum = [0u32; 4];
        for (i, w) in self
            .sink
            .read_u32(&self.ctx, 0, 4 * groups as usize)?
            .iter()
            .enumerate()
        {
            sum[i % 4] ^= w;
        }
        Ok(ProbeRun {
            sum,
            gave_up: v.persistent && gave_up,
            arrivals,
        })
    }
}
