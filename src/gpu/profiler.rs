//! GPU timing: per-op timestamps (each op in its own pass with begin / end writes) and the
//! device's buffer-copy bandwidth, the roofline that decode is measured against.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::gpu::buffers::map_read;

/// Total GPU time of one kernel name over a profiled run.
#[derive(Debug, Clone)]
pub struct KernelTiming {
    pub name: String,
    pub calls: usize,
    pub total_ns: f64,
    /// the longest single call
    pub max_ns: f64,
}

pub struct Profiler {
    query_set: wgpu::QuerySet,
    capacity: u32,
    names: Vec<String>,
}

impl Profiler {
    /// Room for `ops` timed ops.
    pub fn new(ctx: &GpuContext, ops: u32) -> Result<Self> {
        if !ctx.has_timestamps() {
            return Err(Error::Gpu(format!(
                "{} offers no timestamp queries",
                ctx.info.name
            )));
        }
        let capacity = ops.min(2048);
        let query_set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profiler"),
            ty: wgpu::QueryType::Timestamp,
            count: capacity * 2,
        });
        Ok(Profiler {
            query_set,
            capacity,
            names: Vec::new(),
        })
    }

    /// Timestamp writes for the next op's pass (None once full).
    /// Timings are totalled per name, or per "name detail" where a detail is given.
    pub fn next(
        &mut self,
        name: &'static str,
        detail: &str,
    ) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let i = self.names.len() as u32;
        if i >= self.capacity {
            return None;
        }
        self.names.push(if detail.is_empty() {
            name.to_string()
        } else {
            format!("{name} {detail}")
        });
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.query_set,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        })
    }

    /// Resolve after the profiled work was submitted in `enc`'s successor; returns per-name totals.
    pub fn finish(self, ctx: &GpuContext) -> Result<Vec<KernelTiming>> {
        let n = self.names.len() as u32;
        if n == 0 {
            return Ok(Vec::new());
        }
        let size = (n * 2 * 8) as u64;
        let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps-read"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        enc.resolve_query_set(&self.query_set, 0..n * 2, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, size);
        ctx.queue.submit([enc.finish()]);
        let bytes = map_read(ctx, &staging)?;
        let period = ctx.queue.get_timestamp_period() as f64;
        let ts: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        let mut by_name: BTreeMap<&str, (usize, f64, f64)> = BTreeMap::new();
        for (i, name) in self.names.iter().enumerate() {
            let dt = ts[2 * i + 1].saturating_sub(ts[2 * i]) as f64 * period;
            let e = by_name.entry(name).or_default();
            e.0 += 1;
            e.1 += dt;
            e.2 = e.2.max(dt);
        }
        let mut v: Vec<KernelTiming> = by_name
            .into_iter()
            .map(|(name, (calls, total_ns, max_ns))| KernelTiming {
                name: name.to_string(),
                calls,
                total_ns,
                max_ns,
            })
            .collect();
        v.sort_by(|a, b| b.total_ns.total_cmp(&a.total_ns));
        Ok(v)
    }
}

/// The device's streaming bandwidth: copies (bytes read + written per second) two ways, and
/// reading alone.
#[derive(Debug, Clone, Copy)]
pub struct CopyBandwidth {
    /// the engine's own streaming-copy shader: median and best of the passes
    pub shader_median: f64,
    pub shader_best: f64,
    /// `copy_buffer_to_buffer` (vkCmdCopyBuffer), best of the passes (it may run on a slower
    /// copy engine: 0.84 TB/s on an H200 in session 3)
    pub engine_best: f64,
    /// the same shader reading only (bytes read per second), best of the passes: a decode
    /// step mostly reads, and its largest matvec outran the copy rate by 2-6% (s12, H100 and
    /// H200), so a copy alone is not the ceiling
    pub read_best: f64,
}

impl CopyBandwidth {
    /// The roofline a decode step is held against: the best rate any way reached, copying or
    /// reading.
    pub fn roofline(&self) -> f64 {
        self.best_copy().max(self.read_best)
    }

    /// The best copy rate, shader or copy engine.
    pub fn best_copy(&self) -> f64 {
        self.shader_best.max(self.engine_best)
    }
}

/// Copy and read bandwidth over two buffers of `bytes` (capped by the binding limit), `passes`
/// timed submissions per way after a warm-up: 8 copies each (shader, copy engine), 32 reads.
/// Wall-clock per submission: ~1 GB a pass takes milliseconds, against tens of microseconds of
/// submit and wait. Run to run on an H200 the median moved by +-7% (s5); the best of the
/// passes is the steadier ceiling, and a roofline should be the best the device can do.
pub fn measure_copy_bandwidth(
    ctx: &GpuContext,
    bytes: u64,
    passes: usize,
) -> Result<CopyBandwidth> {
    let bytes = bytes.min(ctx.max_binding()).min(ctx.limits.max_buffer_size) / 16 * 16;
    let make = |label| {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    };
    let (a, b) = (make("bw-src"), make("bw-dst"));
    let copy = ctx.pipelines.get(&ctx.device, "stream_copy", &[])?;
    let read = ctx
        .pipelines
        .get(&ctx.device, "stream_copy", &[("READ", 1.0)])?;
    let bind = |pipeline: &wgpu::ComputePipeline| {
        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("bw"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: a.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: b.as_entire_binding(),
                },
            ],
        })
    };
    let (copy_bind, read_bind) = (bind(&copy), bind(&read));
    let groups = ((bytes / 16 / 256) as u32).clamp(1, 65535);
    const COPIES: usize = 8;
    #[derive(Clone, Copy)]
    enum Way {
        Shader,
        Engine,
        Read,
    }
    let run = |way: Way| -> Result<f64> {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        // a copy moves its bytes twice (read and write), a read once; reads are four times
        // as many, so the submission's own cost (tens of microseconds) stays under 1%
        let (reps, moved) = match way {
            Way::Read => (4 * COPIES, 1.0),
            Way::Shader | Way::Engine => (COPIES, 2.0),
        };
        for _ in 0..reps {
            let (pipeline, bind) = match way {
                Way::Engine => {
                    enc.copy_buffer_to_buffer(&a, 0, &b, 0, bytes);
                    continue;
                }
                Way::Shader => (&copy, &copy_bind),
                Way::Read => (&read, &read_bind),
            };
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind, &[]);
            pass.dispatch_workgroups(groups, 1, 1);
        }
        let t = Instant::now();
        ctx.queue.submit([enc.finish()]);
        ctx.wait()?;
        Ok(reps as f64 * moved * bytes as f64 / t.elapsed().as_secs_f64())
    };
    let measure = |way: Way| -> Result<Vec<f64>> {
        run(way)?; // warm-up: pipeline and first touch
        let mut rates = (0..passes.max(1))
            .map(|_| run(way))
            .collect::<Result<Vec<f64>>>()?;
        rates.sort_by(f64::total_cmp);
        Ok(rates)
    };
    let shader = measure(Way::Shader)?;
    let engine = measure(Way::Engine)?;
    let read = measure(Way::Read)?;
    Ok(CopyBandwidth {
        shader_median: shader[shader.len() / 2],
        shader_best: shader[shader.len() - 1],
        engine_best: engine[engine.len() - 1],
        read_best: read[read.len() - 1],
    })
}

/// What an empty dispatch behind a barrier costs on this device, in seconds: chains of
/// dispatches of `workgroups` workgroups that all write one word of the same buffer (so wgpu
/// records a barrier before each) in one pass, timed from submit to completion at two lengths;
/// the difference per extra dispatch removes the submission's own cost. Best of `passes`.
pub fn measure_barrier_cost(ctx: &GpuContext, workgroups: u32, passes: usize) -> Result<f64> {
    let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("barrier-probe"),
        size: 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let pipeline = ctx.pipelines.get(&ctx.device, "barrier_probe", &[])?;
    let bind = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("barrier-probe"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: buffer.as_entire_binding(),
        }],
    });
    let run = |n: usize| -> Result<f64> {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            for _ in 0..n {
                pass.dispatch_workgroups(workgroups.max(1), 1, 1);
            }
        }
        let commands = enc.finish();
        let t = Instant::now();
        ctx.queue.submit([commands]);
        ctx.wait()?;
        Ok(t.elapsed().as_secs_f64())
    };
    const SHORT: usize = 16;
    const LONG: usize = 528;
    run(LONG)?; // warm-up: pipeline and first submission
    let mut best = f64::INFINITY;
    for _ in 0..passes.max(1) {
        let (a, b) = (run(SHORT)?, run(LONG)?);
        best = best.min((b - a).max(0.0) / (LONG - SHORT) as f64);
    }
    Ok(best)
}
