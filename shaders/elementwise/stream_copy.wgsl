// dst = src, 16 bytes per invocation per step, grid-stride: the device's streaming bandwidth
// as the engine's own kernels see it (vkCmdCopyBuffer may run on a slower copy engine).
// READ: src is only read (xor of its words, stored where no value meets the test, so the
// loads stay): the read-only rate, which a decode step's weight stream is closer to.
override READ: bool = false;

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = arrayLength(&src);
    let stride = nwg.x * 256u;
    if (READ) {
        // four loads issued before any is used, then the rest one at a time
        var acc = vec4<u32>(0u);
        var i = gid.x;
        while (i + 3u * stride < n) {
            let a = src[i];
            let b = src[i + stride];
            let c = src[i + 2u * stride];
            let d = src[i + 3u * stride];
            acc ^= bitcast<vec4<u32>>(a) ^ bitcast<vec4<u32>>(b) ^ bitcast<vec4<u32>>(c)
                 ^ bitcast<vec4<u32>>(d);
            i += 4u * stride;
        }
        for (; i < n; i += stride) {
            acc ^= bitcast<vec4<u32>>(src[i]);
        }
        if (acc.x == 0x9e3779b9u && acc.y == 0x7f4a7c15u && gid.x < n) {
            dst[gid.x] = bitcast<vec4<f32>>(acc);
        }
        return;
    }
    for (var i = gid.x; i < n; i += stride) {
        dst[i] = src[i];
    }
}
