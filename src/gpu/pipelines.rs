//! Shader sources (real .wgsl files under shaders/, compiled into the binary) and the pipeline
//! cache, keyed by shader name and pipeline-overridable constants. Dynamic sizes live in
//! uniforms, so nothing is recompiled per token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

const COMMON: &str = include_str!("../../shaders/common/bf16.wgsl");
const MATMUL_BODY: &str = include_str!("../../shaders/matmul/matmul_body.wgsl");
const ROUTE_CORE: &str = include_str!("../../shaders/elementwise/route_core.wgsl");
const Q8_BLOCK: &str = include_str!("../../shaders/matmul/q8_block.wgsl");
const DECODE_ATTN: &str = include_str!("../../shaders/attention/decode.wgsl");
const ARGMAX_TREE: &str = include_str!("../../shaders/elementwise/argmax_tree.wgsl");

/// Shaders assembled from a format-specific part and a shared body (WGSL has no includes):
/// (name, part prepended to the body, body).
const COMPOSED: &[(&str, &str, &str)] = &[
    // the decode attention alone, or with o_proj's workgroups beside it
    (
        "attn_decode",
        include_str!("../../shaders/attention/decode_main.wgsl"),
        DECODE_ATTN,
    ),
    (
        "attn_oproj",
        include_str!("../../shaders/attention/attn_oproj.wgsl"),
        DECODE_ATTN,
    ),
    (
        "matvec_q8",
        include_str!("../../shaders/matmul/matvec_q8.wgsl"),
        Q8_BLOCK,
    ),
    // the two stages of the greedy choice share the workgroup's tree
    (
        "argmax",
        include_str!("../../shaders/elementwise/argmax.wgsl"),
        ARGMAX_TREE,
    ),
    (
        "argmax_partial",
        include_str!("../../shaders/elementwise/argmax_partial.wgsl"),
        ARGMAX_TREE,
    ),
    (
        "matmul",
        include_str!("../../shaders/matmul/matmul_w16.wgsl"),
        MATMUL_BODY,
    ),
    (
        "matmul_q8",
        include_str!("../../shaders/matmul/matmul_wq8.wgsl"),
        MATMUL_BODY,
    ),
    (
        "moe_route",
        include_str!("../../shaders/elementwise/moe_route.wgsl"),
        ROUTE_CORE,
    ),
    (
        "moe_router",
        include_str!("../../shaders/elementwise/moe_router.wgsl"),
        ROUTE_CORE,
    ),
];

/// (name, source) of every shader.
const SHADERS: &[(&str, &str)] = &[
    (
        "matmul_reduce",
        include_str!("../../shaders/matmul/matmul_reduce.wgsl"),
    ),
    (
        "matvec_q8_grouped",
        include_str!("../../shaders/matmul/matvec_q8_grouped.wgsl"),
    ),
    (
        "sample",
        include_str!("../../shaders/elementwise/sample.wgsl"),
    ),
    (
        "matvec_sg",
        include_str!("../../shaders/matmul/matvec_sg.wgsl"),
    ),
    ("matvec", include_str!("../../shaders/matmul/matvec.wgsl")),
    (
        "matvec_vec4",
        include_str!("../../shaders/matmul/matvec_vec4.wgsl"),
    ),
    ("rms_norm", include_str!("../../shaders/norm/rms_norm.wgsl")),
    ("rope", include_str!("../../shaders/elementwise/rope.wgsl")),
    (
        "silu_mul",
        include_str!("../../shaders/elementwise/silu_mul.wgsl"),
    ),
    ("add", include_str!("../../shaders/elementwise/add.wgsl")),
    (
        "fill_random",
        include_str!("../../shaders/elementwise/fill_random.wgsl"),
    ),
    (
        "moe_group",
        include_str!("../../shaders/elementwise/moe_group.wgsl"),
    ),
    (
        "moe_sum",
        include_str!("../../shaders/elementwise/moe_sum.wgsl"),
    ),
    ("copy", include_str!("../../shaders/elementwise/copy.wgsl")),
    (
        "embedding",
        include_str!("../../shaders/elementwise/embedding.wgsl"),
    ),
    (
        "qk_norm_rope_kv",
        include_str!("../../shaders/elementwise/qk_norm_rope_kv.wgsl"),
    ),
    (
        "barrier_probe",
        include_str!("../../shaders/elementwise/barrier_probe.wgsl"),
    ),
    (
        "l2_prefetch",
        include_str!("../../shaders/matmul/l2_prefetch.wgsl"),
    ),
    (
        "stream_read",
        include_str!("../../shaders/elementwise/stream_read.wgsl"),
    ),
    (
        "stream_copy",
        include_str!("../../shaders/elementwise/stream_copy.wgsl"),
    ),
    (
        "attn_prefill",
        include_str!("../../shaders/attention/prefill.wgsl"),
    ),
    // the AuT audio encoder (src/gpu/audio_kernels.rs); GELU is written once, in gelu.wgsl
    (
        "conv2d_gelu",
        concat!(
            include_str!("../../shaders/audio/gelu.wgsl"),
            include_str!("../../shaders/audio/conv2d_gelu.wgsl")
        ),
    ),
    (
        "add_bias",
        concat!(
            include_str!("../../shaders/audio/gelu.wgsl"),
            include_str!("../../shaders/audio/add_bias.wgsl")
        ),
    ),
    (
        "layer_norm",
        include_str!("../../shaders/audio/layer_norm.wgsl"),
    ),
    (
        "attn_windowed",
        include_str!("../../shaders/audio/attn_windowed.wgsl"),
    ),
    ("im2col", include_str!("../../shaders/audio/im2col.wgsl")),
    (
        "flatten_time_rows",
        include_str!("../../shaders/audio/flatten_time_rows.wgsl"),
    ),
];

type Key = (String, Vec<(String, u64)>);

/// matvec_q8_phases.wgsl with its phase template instantiated for each of `n` phases ({P} the
/// phase, {N} the next) and a case each in its switch: a pipeline holds no code of phases it
/// does not run (dead copies made every phase slower).
fn phases_source(n: usize) -> String {
    const SRC: &str = include_str!("../../shaders/matmul/matvec_q8_phases.wgsl");
    const MARK: &str = "// ---- phase template ----";
    let (head, template) = SRC.split_once(MARK).unwrap_or((SRC, ""));
    let case = |args: &str| -> String {
        (0..n)
            .map(|i| format!("case {i}u: {{ run_{i}({args}); }}\n        "))
            .collect()
    };
    let mut out = format!(
        "{COMMON}\n{Q8_BLOCK}\n{}",
        head.replace("// {CASES}", &case("li, lane, sgs, first, ph, 0u, true"))
            .replace("// {PCASES}", &case("li, lane, sgs, first, ph, all, fresh"))
    );
    for i in 0..n {
        out.push_str(
            &template
                .replace("{P}", &i.to_string())
                .replace("{N}", &(i + 1).to_string()),
        );
    }
    out
}

/// Whether shaders keep wgpu's bounds checks (`OMNI_GPU_CHECKED=1`).
fn checked_shaders() -> bool {
    std::env::var("OMNI_GPU_CHECKED").is_ok_and(|v| v == "1")
}

/// The WGSL of shader `name` as its pipeline with these constants is built from.
pub fn shader_source(name: &str, constants: &[(&str, f64)]) -> Result<String> {
    Ok(if name == "matvec_q8_phases" {
        let n = constants
            .iter()
            .find(|c| c.0 == "N_PHASES")
            .map_or(4.0, |c| c.1);
        phases_source((n as usize).clamp(1, 4))
    } else if let Some((_, part, body)) = COMPOSED.iter().find(|(n, _, _)| *n == name) {
        // the shared piece first: the matmul body declares Params, which the part uses
        format!("{COMMON}\n{body}\n{part}")
    } else {
        let src = SHADERS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .ok_or_else(|| Error::Gpu(format!("no shader named `{name}`")))?;
        format!("{COMMON}\n{src}")
    })
}

#[derive(Default)]
pub struct PipelineCache {
    pipelines: Mutex<HashMap<Key, Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    /// The (shader, constants) of every pipeline built so far, sorted.
    pub fn built(&self) -> Vec<(String, Vec<(String, f64)>)> {
        let map = match self.pipelines.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let mut v: Vec<_> = map
            .keys()
            .map(|(n, c)| {
                let c = c.iter().map(|(k, b)| (k.clone(), f64::from_bits(*b)));
                (n.clone(), c.collect())
            })
            .collect();
        v.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(format!("{:?}", a.1).cmp(&format!("{:?}", b.1)))
        });
        v
    }

    /// The pipeline of shader `name` with these override constants, compiled on first use.
    pub fn get(
        &self,
        device: &wgpu::Device,
        name: &str,
        constants: &[(&str, f64)],
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key: Key = (
            name.to_string(),
            constants
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_bits()))
                .collect(),
        );
        let mut map = self
            .pipelines
            .lock()
            .map_err(|_| Error::Gpu("pipeline cache lock poisoned".into()))?;
        if let Some(p) = map.get(&key) {
            return Ok(p.clone());
        }
        let source = shader_source(name, constants)?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let module = if checked_shaders() {
            device.create_shader_module(desc)
        } else {
            // SAFETY: wgpu's runtime checks clamp every storage index and bound every loop,
            // which costs the matmul and matvec inner loops real time. Our kernels index
            // only within sizes the host validated when it built each op (shapes checked
            // at load, offsets and lengths derived from them), and the GPU test suite runs
            // them on lavapipe. OMNI_GPU_CHECKED=1 turns the checks back on to chase a bug.
            unsafe {
                device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        };
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "shader `{name}` (constants {constants:?}) failed to build: {err:?}"
            )));
        }
        let pipeline = Arc::new(pipeline);
        map.insert(key, pipeline.clone());
        Ok(pipeline)
    }
}
