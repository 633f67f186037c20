//! What a kernel's instructions cost when they are not in any cache (session 15). A decode
//! step streams ~200 MB of weights per layer through the GPU's L2 (60 MB on an H200), so by
//! the time a layer's kernels run again their code has been pushed out with the data. The
//! probe times a kernel of N straight-line multiply-adds (eight independent chains, so the
//! math itself is short) after a dispatch that reads a buffer larger than the L2 (and, in a
//! third column, after that and a large kernel of other code, which also empties the SMs'
//! instruction caches), and the same kernel back to back; the difference over N = 0 is what
//! fetching N statements' code costs cold and warm. `omni bench-stream --icache` prints it.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// One code size: what its statements cost a dispatch beyond an empty kernel, microseconds.
#[derive(Debug, Clone, Copy)]
pub struct IcacheRow {
    pub statements: u32,
    /// back to back: the code stays cached
    pub warm_us: f64,
    /// each run after a read of the flush buffer
    pub cold_us: f64,
    /// each run after that read and another kernel of `EVICTOR` statements (other code)
    pub colder_us: f64,
    /// the statements behind a branch no run takes (in the binary, never executed): back to
    /// back, and after the read and the other code, beyond such a kernel of 8 statements
    pub skipped_warm_us: f64,
    pub skipped_colder_us: f64,
}

/// Statements of the kernel run between two of the measured ones in `colder_us`: ~160 KB of
/// code on an H200, beyond an SM's instruction caches
const EVICTOR: u32 = 6000;

/// Eight accumulators, seeded from the invocation id so nothing folds, then `n` multiply-adds
/// with distinct constants; stored only under a condition no value meets, so nothing is
/// dropped.
pub fn code_kernel(n: u32) -> String {
    code_kernel_seeded(n, 0, false)
}

/// The same with other constants (`seed` > 0): different code of the same shape, so running
/// it pushes the first out of the SMs' instruction caches, which a data stream does not touch.
/// `skipped`: the statements behind a test of a word no run writes (the compiler cannot fold
/// it), so the binary holds them and no invocation runs them.
fn code_kernel_seeded(n: u32, seed: u32, skipped: bool) -> String {
    let mut s = String::from(
        "@group(0) @binding(0) var<storage, read_write> sink: array<f32>;\n\
         @compute @workgroup_size(256)\n\
         fn main(@builtin(global_invocation_id) g: vec3<u32>) {\n\
         let x = f32(g.x);\n",
    );
    for a in 0..8 {
        s += &format!("var a{a} = x + {a}.0;\n");
    }
    if skipped {
        s += "if (sink[1] == 12345.0) {\n";
    }
    for i in 0..n {
        let c = 1.0 + (i + 1) as f64 * 1e-7 + seed as f64 * 1e-4;
        let d = (i % 13) as f64 * 1e-3 + seed as f64 * 1e-2;
        s += &format!("a{} = fma(a{}, {c:.9}, {d:.6});\n", i % 8, i % 8);
    }
    if skipped {
        s += "}\n";
    }
    s += "let s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));\n\
          if (s == 1.5e-38) { sink[g.x % 4u] = s; }\n}\n";
    s
}

/// Reads the whole flush buffer (the same sink, so a barrier separates it from the code
/// kernel).
const FLUSH_KERNEL: &str = "@group(0) @binding(0) var<storage, read_write> sink: array<f32>;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let stride = n.x * 256u;
    var acc = vec4<u32>(0u);
    for (var i = g.x; i < arrayLength(&src); i += stride) { acc = acc ^ src[i]; }
    if (acc.x == 0x12345678u && acc.y == 7u) { sink[0] = 1.0; }
}
";

fn pipeline(ctx: &GpuContext, label: &str, source: &str) -> wgpu::ComputePipeline {
    let module = ctx
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
    ctx.device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(label),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        })
}

/// The flush read's size for a wish of `flush_bytes`: capped by one storage binding and one
/// buffer, in whole 16-byte words.
pub fn flush_size(ctx: &GpuContext, flush_bytes: u64) -> u64 {
    let l = &ctx.limits;
    flush_bytes
        .min(l.max_storage_buffer_binding_size)
        .min(l.max_buffer_size)
        / 16
        * 16
}

/// Times `sizes` (statements) with `workgroups` workgroups of 256 per code dispatch, a flush
/// read of `flush_bytes` (as `flush_size` caps it), `reps` pairs per submission, the best of
/// `passes`.
pub fn measure(
    ctx: &GpuContext,
    sizes: &[u32],
    workgroups: u32,
    flush_bytes: u64,
    reps: usize,
    passes: usize,
) -> Result<Vec<IcacheRow>> {
    let flush_bytes = flush_size(ctx, flush_bytes);
    if flush_bytes == 0 || reps == 0 {
        return Err(Error::Gpu(
            "the instruction-cache probe needs a flush buffer".into(),
        ));
    }
    let sink = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("icache-sink"),
        size: 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let src = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("icache-flush"),
        size: flush_bytes,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let flush = pipeline(ctx, "icache-flush", FLUSH_KERNEL);
    let flush_bind = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("icache-flush"),
        layout: &flush.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: sink.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: src.as_entire_binding(),
            },
        ],
    });
    let flush_groups = workgroups.max(1) * 4;
    let evictor = pipeline(
        ctx,
        "icache-evictor",
        &code_kernel_seeded(EVICTOR, 1, false),
    );
    // the code kernels' one binding: the shared sink
    let sink_bind = |code: &wgpu::ComputePipeline| {
        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("icache-code"),
            layout: &code.get_bind_group_layout(0),
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: sink.as_entire_binding(),
            }],
        })
    };
    let evictor_bind = sink_bind(&evictor);
    // flush: 0 none, 1 the data read, 2 the data read and the evictor's code
    let time = |code: &wgpu::ComputePipeline, flush_level: u32| -> Result<f64> {
        let bind = sink_bind(code);
        let mut best = f64::INFINITY;
        for pass in 0..passes.max(1) + 1 {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            {
                let mut cp = enc.begin_compute_pass(&Default::default());
                for _ in 0..reps {
                    if flush_level > 0 {
                        cp.set_pipeline(&flush);
                        cp.set_bind_group(0, &flush_bind, &[]);
                        cp.dispatch_workgroups(flush_groups, 1, 1);
                    }
                    if flush_level > 1 {
                        cp.set_pipeline(&evictor);
                        cp.set_bind_group(0, &evictor_bind, &[]);
                        cp.dispatch_workgroups(workgroups.max(1), 1, 1);
                    }
                    cp.set_pipeline(code);
                    cp.set_bind_group(0, &bind, &[]);
                    cp.dispatch_workgroups(workgroups.max(1), 1, 1);
                }
            }
            let commands = enc.finish();
            let t = Instant::now();
            ctx.queue.submit([commands]);
            ctx.wait()?;
            // the first pass only warms the pipelines and the submission path
            if pass > 0 {
                best = best.min(t.elapsed().as_secs_f64() / reps as f64);
            }
        }
        Ok(best)
    };
    let empty = pipeline(ctx, "icache-code-0", &code_kernel(0));
    let base = [time(&empty, 0)?, time(&empty, 1)?, time(&empty, 2)?];
    let small = pipeline(ctx, "icache-skip-8", &code_kernel_seeded(8, 0, true));
    let skip_base = [time(&small, 0)?, time(&small, 2)?];
    let mut rows = Vec::new();
    for &n in sizes {
        let code = pipeline(ctx, &format!("icache-code-{n}"), &code_kernel(n));
        let t = [time(&code, 0)?, time(&code, 1)?, time(&code, 2)?];
        let skip = pipeline(
            ctx,
            &format!("icache-skip-{n}"),
            &code_kernel_seeded(n, 0, true),
        );
        let ts = [time(&skip, 0)?, time(&skip, 2)?];
        rows.push(IcacheRow {
            statements: n,
            warm_us: (t[0] - base[0]) * 1e6,
            cold_us: (t[1] - base[1]) * 1e6,
            colder_us: (t[2] - base[2]) * 1e6,
            skipped_warm_us: (ts[0] - skip_base[0]) * 1e6,
            skipped_colder_us: (ts[1] - skip_base[1]) * 1e6,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::code_kernel;

    #[test]
    fn the_code_kernel_parses_with_its_statements() {
        let src = code_kernel(20);
        let module = naga::front::wgsl::parse_str(&src).expect("valid WGSL");
        assert_eq!(module.entry_points.len(), 1);
        assert_eq!(src.matches("fma(").count(), 20);
        let skipped = super::code_kernel_seeded(20, 1, true);
        assert!(naga::front::wgsl::parse_str(&skipped).is_ok());
        assert_eq!(skipped.matches("fma(").count(), 20);
        assert!(naga::front::wgsl::parse_str(super::FLUSH_KERNEL).is_ok());
    }
}
