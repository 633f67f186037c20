//! What the Vulkan driver made of our kernels: registers, spills, instruction counts, whatever
//! it reports through VK_KHR_pipeline_executable_properties (NVIDIA and RADV do; lavapipe does
//! not). A kernel's speed often turns on how many registers it holds (how many subgroups an SM
//! keeps in flight, whether loads issued early spill), which no timing shows directly.
//!
//! wgpu does not expose the extension, so this builds each pipeline again on a Vulkan device of
//! its own: the same WGSL with the same constants, turned into SPIR-V by naga with the options
//! our trusted pipelines get from wgpu (no bounds or integer-division checks, no loop
//! bounding, no zeroed workgroup memory), and the device features wgpu enables (every core
//! feature the adapter has, with robust buffer access). `omni bench --shader-stats FILTER` prints the result for the
//! pipelines its run built.

use std::ffi::CStr;

use ash::vk;

use crate::error::{Error, Result};

/// One pipeline's executables as the driver reports them.
pub struct ShaderStats {
    pub shader: String,
    pub constants: Vec<(String, f64)>,
    pub executables: Vec<Executable>,
}

/// A compiled stage: its name, subgroup size and (statistic, value) pairs.
pub struct Executable {
    pub name: String,
    pub subgroup_size: u32,
    pub stats: Vec<(String, String)>,
}

fn vk_err(what: &str) -> impl Fn(vk::Result) -> Error + '_ {
    move |e| Error::Gpu(format!("shader statistics: {what}: {e}"))
}

/// A pipeline's SPIR-V and the resources its layout needs.
struct Compiled {
    spirv: Vec<u32>,
    /// (group, binding, is uniform) of every resource the WGSL declares
    bindings: Vec<(u32, u32, bool)>,
}

/// SPIR-V of `wgsl`'s `main` with `constants` applied, as wgpu's Vulkan backend writes it for
/// our trusted pipelines, and its bindings.
fn compile(wgsl: &str, constants: &[(String, f64)]) -> Result<Compiled> {
    let module = naga::front::wgsl::parse_str(wgsl)
        .map_err(|e| Error::Gpu(format!("WGSL: {}", e.emit_to_string(wgsl))))?;
    let bindings = module
        .global_variables
        .iter()
        .filter_map(|(_, g)| {
            let b = g.binding.as_ref()?;
            let uniform = matches!(g.space, naga::AddressSpace::Uniform);
            Some((b.group, b.binding, uniform))
        })
        .collect();
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| Error::Gpu(format!("validation: {e:?}")))?;
    let map: naga::back::PipelineConstants = constants.iter().cloned().collect();
    let stage = Some((naga::ShaderStage::Compute, "main"));
    let (module, info) =
        naga::back::pipeline_constants::process_overrides(&module, &info, stage, &map)
            .map_err(|e| Error::Gpu(format!("constants: {e}")))?;
    let unchecked = naga::proc::BoundsCheckPolicy::Unchecked;
    let options = naga::back::spv::Options {
        lang_version: (1, 6),
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: unchecked,
            buffer: unchecked,
            image_load: unchecked,
            binding_array: unchecked,
        },
        zero_initialize_workgroup_memory: naga::back::spv::ZeroInitializeWorkgroupMemoryMode::None,
        force_loop_bounding: false,
        ray_query_initialization_tracking: false,
        // (naga's default wraps every integer division in a zero check; trusted pipelines
        // are built without it)
        emit_int_div_checks: false,
        ..Default::default()
    };
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: "main".into(),
    };
    let spirv = naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
        .map_err(|e| Error::Gpu(format!("SPIR-V: {e}")))?;
    Ok(Compiled { spirv, bindings })
}

/// A Vulkan device on the adapter whose name contains `adapter` (any, if empty) with the
/// statistics extension on.
struct StatsDevice {
    _entry: ash::Entry,
    instance: ash::Instance,
    device: ash::Device,
    exec: ash::khr::pipeline_executable_properties::Device,
}

impl StatsDevice {
    fn open(adapter: &str) -> Result<Self> {
        // SAFETY: plain Vulkan setup; every handle made here is destroyed in Drop, after its
        // children (the pipelines are destroyed where they are made), and the loader (`entry`)
        // outlives them all: on failure the instance goes before `entry` is dropped.
        unsafe {
            let entry = ash::Entry::load()
                .map_err(|e| Error::Gpu(format!("shader statistics: no Vulkan loader: {e}")))?;
            let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_3);
            let instance = entry
                .create_instance(
                    &vk::InstanceCreateInfo::default().application_info(&app),
                    None,
                )
                .map_err(vk_err("instance"))?;
            match Self::open_device(&instance, adapter) {
                Ok((device, exec)) => Ok(StatsDevice {
                    _entry: entry,
                    instance,
                    device,
                    exec,
                }),
                Err(e) => {
                    instance.destroy_instance(None);
                    drop(entry);
                    Err(e)
                }
            }
        }
    }

    unsafe fn open_device(
        instance: &ash::Instance,
        adapter: &str,
    ) -> Result<(
        ash::Device,
        ash::khr::pipeline_executable_properties::Device,
    )> {
        let want = ash::khr::pipeline_executable_properties::NAME;
        let robust2 = ash::ext::robustness2::NAME;
        let wanted = adapter.to_lowercase();
        let mut chosen = None;
        for pd in unsafe { instance.enumerate_physical_devices() }.map_err(vk_err("devices"))? {
            let props = unsafe { instance.get_physical_device_properties(pd) };
            let name = props
                .device_name_as_c_str()
                .map(|c| c.to_string_lossy().to_lowercase());
            if !name.is_ok_and(|n| n.contains(&wanted)) {
                continue;
            }
            let exts = unsafe { instance.enumerate_device_extension_properties(pd) }
                .map_err(vk_err("extensions"))?;
            let has = |n: &CStr| exts.iter().any(|e| e.extension_name_as_c_str() == Ok(n));
            if has(want) {
                chosen = Some((pd, has(robust2)));
                break;
            }
        }
        let (pd, with_robust2) = chosen.ok_or_else(|| {
            Error::Gpu(format!(
                "shader statistics: no Vulkan adapter matching `{adapter}` offers {}",
                want.to_string_lossy()
            ))
        })?;
        let families = unsafe { instance.get_physical_device_queue_family_properties(pd) };
        let family = families
            .iter()
            .position(|q| q.queue_flags.contains(vk::QueueFlags::COMPUTE))
            .ok_or_else(|| Error::Gpu("shader statistics: no compute queue".into()))?;
        // every feature the adapter has, as wgpu enables what it can (robust buffer access
        // included: it changes the code a driver emits)
        let mut f11 = vk::PhysicalDeviceVulkan11Features::default();
        let mut f12 = vk::PhysicalDeviceVulkan12Features::default();
        let mut f13 = vk::PhysicalDeviceVulkan13Features::default();
        let mut r2 = vk::PhysicalDeviceRobustness2FeaturesEXT::default();
        let mut all = vk::PhysicalDeviceFeatures2::default()
            .push_next(&mut f11)
            .push_next(&mut f12)
            .push_next(&mut f13);
        if with_robust2 {
            all = all.push_next(&mut r2);
        }
        unsafe { instance.get_physical_device_features2(pd, &mut all) };
        let mut exec_on = vk::PhysicalDevicePipelineExecutablePropertiesFeaturesKHR::default()
            .pipeline_executable_info(true);
        let mut names = vec![want.as_ptr()];
        if with_robust2 {
            names.push(robust2.as_ptr());
        }
        let priority = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(family as u32)
            .queue_priorities(&priority)];
        let info = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queues)
            .enabled_extension_names(&names)
            .push_next(&mut exec_on)
            .push_next(&mut all);
        let device =
            unsafe { instance.create_device(pd, &info, None) }.map_err(vk_err("device"))?;
        let exec = ash::khr::pipeline_executable_properties::Device::new(instance, &device);
        Ok((device, exec))
    }

    /// Build `spirv` as a compute pipeline with `bindings` and read its executables' statistics.
    fn statistics(&self, spirv: &[u32], bindings: &[(u32, u32, bool)]) -> Result<Vec<Executable>> {
        let d = &self.device;
        // SAFETY: every object made here or in `build_and_read` is destroyed before this
        // returns, on every path; the pipeline is never bound or dispatched.
        unsafe {
            let module = d
                .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(spirv), None)
                .map_err(vk_err("shader module"))?;
            let mut layouts = Vec::new();
            let mut layout = vk::PipelineLayout::null();
            let out = self.build_and_read(module, bindings, &mut layouts, &mut layout);
            if layout != vk::PipelineLayout::null() {
                d.destroy_pipeline_layout(layout, None);
            }
            for l in layouts {
                d.destroy_descriptor_set_layout(l, None);
            }
            d.destroy_shader_module(module, None);
            out
        }
    }

    /// The pipeline of `module` and its executables' statistics. The set layouts and the
    /// pipeline layout it makes go into `layouts` / `layout` for the caller to destroy,
    /// whatever happens; the pipeline is destroyed here.
    unsafe fn build_and_read(
        &self,
        module: vk::ShaderModule,
        bindings: &[(u32, u32, bool)],
        layouts: &mut Vec<vk::DescriptorSetLayout>,
        layout: &mut vk::PipelineLayout,
    ) -> Result<Vec<Executable>> {
        let d = &self.device;
        let groups = bindings.iter().map(|b| b.0 + 1).max().unwrap_or(0);
        for g in 0..groups {
            let list: Vec<_> = bindings
                .iter()
                .filter(|b| b.0 == g)
                .map(|&(_, binding, uniform)| {
                    vk::DescriptorSetLayoutBinding::default()
                        .binding(binding)
                        .descriptor_type(if uniform {
                            vk::DescriptorType::UNIFORM_BUFFER
                        } else {
                            vk::DescriptorType::STORAGE_BUFFER
                        })
                        .descriptor_count(1)
                        .stage_flags(vk::ShaderStageFlags::COMPUTE)
                })
                .collect();
            let info = vk::DescriptorSetLayoutCreateInfo::default().bindings(&list);
            // SAFETY: a plain create call on our device
            let l = unsafe { d.create_descriptor_set_layout(&info, None) }
                .map_err(vk_err("set layout"))?;
            layouts.push(l);
        }
        let info = vk::PipelineLayoutCreateInfo::default().set_layouts(layouts);
        // SAFETY: the set layouts are alive (the caller destroys them after this)
        *layout =
            unsafe { d.create_pipeline_layout(&info, None) }.map_err(vk_err("pipeline layout"))?;
        let stage = vk::PipelineShaderStageCreateInfo::default()
            .stage(vk::ShaderStageFlags::COMPUTE)
            .module(module)
            .name(c"main");
        let info = vk::ComputePipelineCreateInfo::default()
            .flags(vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR)
            .stage(stage)
            .layout(*layout);
        // SAFETY: module and layout are alive; every pipeline handed back is destroyed below
        unsafe {
            match d.create_compute_pipelines(vk::PipelineCache::null(), &[info], None) {
                Ok(p) => {
                    let r = self.read(p[0]);
                    for pipeline in p {
                        d.destroy_pipeline(pipeline, None);
                    }
                    r
                }
                Err((p, e)) => {
                    for pipeline in p.into_iter().filter(|x| *x != vk::Pipeline::null()) {
                        d.destroy_pipeline(pipeline, None);
                    }
                    Err(vk_err("pipeline")(e))
                }
            }
        }
    }

    unsafe fn read(&self, pipeline: vk::Pipeline) -> Result<Vec<Executable>> {
        let info = vk::PipelineInfoKHR::default().pipeline(pipeline);
        let props = unsafe { self.exec.get_pipeline_executable_properties(&info) }
            .map_err(vk_err("executables"))?;
        let mut out = Vec::new();
        for (i, p) in props.iter().enumerate() {
            let name = p
                .name_as_c_str()
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ex = vk::PipelineExecutableInfoKHR::default()
                .pipeline(pipeline)
                .executable_index(i as u32);
            let stats = unsafe { self.exec.get_pipeline_executable_statistics(&ex) }
                .map_err(vk_err("statistics"))?;
            let list = stats
                .iter()
                .map(|s| {
                    let n = s
                        .name_as_c_str()
                        .map(|c| c.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    // SAFETY: the union member read is the one `format` names
                    let v = unsafe {
                        match s.format {
                            vk::PipelineExecutableStatisticFormatKHR::BOOL32 => {
                                (s.value.b32 != 0).to_string()
                            }
                            vk::PipelineExecutableStatisticFormatKHR::INT64 => {
                                s.value.i64.to_string()
                            }
                            vk::PipelineExecutableStatisticFormatKHR::UINT64 => {
                                s.value.u64.to_string()
                            }
                            vk::PipelineExecutableStatisticFormatKHR::FLOAT64 => {
                                format!("{:.3}", s.value.f64)
                            }
                            _ => "?".into(),
                        }
                    };
                    (n, v)
                })
                .collect();
            out.push(Executable {
                name,
                subgroup_size: p.subgroup_size,
                stats: list,
            });
        }
        Ok(out)
    }
}

impl Drop for StatsDevice {
    fn drop(&mut self) {
        // SAFETY: nothing made from them is alive (see `statistics`)
        unsafe {
            self.device.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}

/// The driver's statistics for each (shader, constants) on the adapter matching `adapter`.
pub fn driver_statistics(
    adapter: &str,
    pipelines: &[(String, Vec<(String, f64)>)],
) -> Result<Vec<ShaderStats>> {
    let dev = StatsDevice::open(adapter)?;
    pipelines
        .iter()
        .map(|(shader, constants)| {
            let c: Vec<(&str, f64)> = constants.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let wgsl = crate::gpu::pipelines::shader_source(shader, &c)?;
            dev.shader_stats(shader, &wgsl, constants)
        })
        .collect()
}

/// The driver's statistics for WGSL sources that are not in the pipeline table (the probes'
/// generated kernels), each under its label.
pub fn driver_statistics_of_sources(
    adapter: &str,
    sources: &[(String, String)],
) -> Result<Vec<ShaderStats>> {
    let dev = StatsDevice::open(adapter)?;
    sources
        .iter()
        .map(|(label, wgsl)| dev.shader_stats(label, wgsl, &[]))
        .collect()
}

impl StatsDevice {
    /// One pipeline's statistics: `wgsl` with `constants` applied, built on this device,
    /// reported under `label`.
    fn shader_stats(
        &self,
        label: &str,
        wgsl: &str,
        constants: &[(String, f64)],
    ) -> Result<ShaderStats> {
        let code =
            compile(wgsl, constants).map_err(|e| Error::Gpu(format!("shader `{label}`: {e}")))?;
        Ok(ShaderStats {
            shader: label.to_string(),
            constants: constants.to_vec(),
            executables: self.statistics(&code.spirv, &code.bindings)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain link's SPIR-V as the statistics build it: the KSPLIT variant too, and every
    /// binding found for the pipeline layout (the driver side needs a device offering the
    /// extension: `omni bench --shader-stats` on NVIDIA)
    #[test]
    fn a_chain_link_turns_into_spirv_with_its_bindings() {
        for split in [1.0, 2.0] {
            let c: Vec<(String, f64)> = [
                ("XIN", 1.0),
                ("DOT", 1.0),
                ("QOUT", 1.0),
                ("ROWS", 4.0),
                ("RPW", 64.0),
                ("WG", 256.0),
                ("KC", 4096.0),
                ("SGC", 32.0),
                ("KSPLIT", split),
                ("KPN", 64.0 * split),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
            let refs: Vec<(&str, f64)> = c.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let wgsl = crate::gpu::pipelines::shader_source("matvec_q8", &refs).unwrap();
            let code = compile(&wgsl, &c).unwrap();
            assert_eq!(code.spirv[0], 0x0723_0203, "SPIR-V magic");
            let b = &code.bindings;
            assert_eq!(b.len(), 11);
            assert_eq!(b.iter().filter(|x| x.2).count(), 1, "one uniform");
        }
    }
}
