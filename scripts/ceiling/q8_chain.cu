// What CUDA reaches on Qwen3-8B's Q8_0 decode matrix chain on this card (session 15).
// Runs on the device machine (nvcc -O3 -arch=sm_90 q8_chain.cu -o q8_chain), not in CI.
// One step: 36 layers x (qkv 6144x4096, o_proj 4096x4096, gate_up 24576x4096,
// down 4096x12288) + lm_head 151936x4096, Q8_0 as the engine stores it (int8 values, one
// f16 scale per 32), int8 x int8 dot products (dp4a) with f32 scales, one kernel per
// matrix in stream order, captured in a CUDA graph. The inputs are fixed buffers (no
// quantisation kernels, no attention, norms or activations): an upper bound for a whole
// step. Variants: plain launches; Hopper's programmatic dependent launch (PDL: the next
// kernel's blocks start early, load their first weights, then wait for the previous
// grid), which Vulkan has no counterpart for.
#include <cstdio>
#include <cstdint>
#include <vector>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { \
    printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); return 1; } } while (0)

struct Mat { const int4* w; const __half* s; int rows, k; float* out; };

// CS: the weights through evict-first streaming loads (ld.global.cs), so the stream does not
// push the kernels' code and the activations out of L2
template <int NV, int WARPS, bool CS>
__device__ __forceinline__ int4 wload(const int4* p) { return CS ? __ldcs(p) : __ldg(p); }

template <int NV, int WARPS, bool CS>
__global__ void __launch_bounds__(WARPS * 32) gemv_q8(Mat m, const int4* xq, const float* xs, int pdl) {
    extern __shared__ int4 smem[];
    int4* sx = smem;                       // k / 16 int4
    float* sxs = (float*)(smem + m.k / 16); // k / 32 scales
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int row = blockIdx.x * WARPS + warp;
    const int n16 = m.k / 16, nb = m.k / 32;
    const int4* wr = m.w + (size_t)row * n16;
    const __half* sr = m.s + (size_t)row * nb;
    int4 v[NV];
#pragma unroll
    for (int j = 0; j < NV; j++) {
        int i = lane + 32 * j;
        v[j] = i < n16 ? wload<NV, WARPS, CS>(wr + i) : make_int4(0, 0, 0, 0);
    }
#if __CUDA_ARCH__ >= 900
    if (pdl) {
        cudaTriggerProgrammaticLaunchCompletion();
        cudaGridDependencySynchronize();
    }
#endif
    for (int i = threadIdx.x; i < n16; i += blockDim.x) sx[i] = xq[i];
    for (int i = threadIdx.x; i < nb; i += blockDim.x) sxs[i] = xs[i];
    __syncthreads();
    float acc = 0.f;
    for (int base = 0; base < n16; base += 32 * NV) {
        if (base) {
#pragma unroll
            for (int j = 0; j < NV; j++) {
                int i = base + lane + 32 * j;
                v[j] = i < n16 ? wload<NV, WARPS, CS>(wr + i) : make_int4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int j = 0; j < NV; j++) {
            int i = base + lane + 32 * j;
            if (i < n16) {
                int4 x = sx[i];
                int d = __dp4a(v[j].x, x.x, 0);
                d = __dp4a(v[j].y, x.y, d);
                d = __dp4a(v[j].z, x.z, d);
                d = __dp4a(v[j].w, x.w, d);
                acc += (float)d * __half2float(CS ? __ldcs(sr + i / 2) : __ldg(sr + i / 2)) * sxs[i / 2];
            }
        }
    }
#pragma unroll
    for (int o = 16; o; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) m.out[row] = acc;
}

__global__ void fill(uint32_t* p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
        p[i] = h & 0x3f3f3f3fu; // small halves / int8s: finite scales, no overflow
    }
}

constexpr int NV = 8, WARPS = 8;

static cudaError_t launch(const Mat& m, const int4* xq, const float* xs, bool pdl, bool cs, cudaStream_t st) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(m.rows / WARPS);
    cfg.blockDim = dim3(WARPS * 32);
    cfg.dynamicSmemBytes = m.k + m.k / 32 * 4;
    cfg.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = pdl ? 1 : 0;
    if (cs) return cudaLaunchKernelEx(&cfg, gemv_q8<NV, WARPS, true>, m, xq, xs, (int)pdl);
    return cudaLaunchKernelEx(&cfg, gemv_q8<NV, WARPS, false>, m, xq, xs, (int)pdl);
}

int main() {
    const int L = 36, H = 4096, I = 12288, V = 151936;
    std::vector<std::pair<int, int>> shapes;
    for (int l = 0; l < L; l++) {
        shapes.push_back({6144, H});
        shapes.push_back({H, H});
        shapes.push_back({2 * I, H});
        shapes.push_back({H, I});
    }
    shapes.push_back({V, H});
    std::vector<Mat> mats;
    double bytes = 0;
    float* out;
    CK(cudaMalloc(&out, (size_t)V * 4));
    for (auto [r, k] : shapes) {
        size_t nw = (size_t)r * k, ns = (size_t)r * (k / 32);
        void *w, *s;
        CK(cudaMalloc(&w, nw));
        CK(cudaMalloc(&s, ns * 2));
        fill<<<1024, 256>>>((uint32_t*)w, nw / 4, r ^ k);
        fill<<<1024, 256>>>((uint32_t*)s, ns / 2, r + k);
        mats.push_back({(const int4*)w, (const __half*)s, r, k, out});
        bytes += nw + ns * 2.0;
    }
    void *xq, *xs;
    CK(cudaMalloc(&xq, I));
    CK(cudaMalloc(&xs, I / 32 * 4));
    fill<<<16, 256>>>((uint32_t*)xq, I / 4, 7);
    fill<<<16, 256>>>((uint32_t*)xs, I / 32, 9);
    CK(cudaFuncSetAttribute(gemv_q8<NV, WARPS, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
    CK(cudaFuncSetAttribute(gemv_q8<NV, WARPS, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
    CK(cudaDeviceSynchronize());
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    printf("%s, %d SMs, L2 %d MB; step %.3f GB, %zu kernels\n", p.name, p.multiProcessorCount,
           p.l2CacheSize >> 20, bytes / 1e9, mats.size());
    auto run_graph = [&](const std::vector<int>& which, bool pdl, bool cs, const char* label, double nbytes) -> int {
        cudaGraph_t g;
        cudaGraphExec_t ge;
        CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
        for (int i : which) CK(launch(mats[i], (const int4*)xq, (const float*)xs, pdl, cs, st));
        CK(cudaStreamEndCapture(st, &g));
        CK(cudaGraphInstantiate(&ge, g, 0));
        CK(cudaGraphLaunch(ge, st));
        CK(cudaStreamSynchronize(st));
        float best = 1e30f;
        for (int rep = 0; rep < 5; rep++) {
            cudaEventRecord(e0, st);
            for (int t = 0; t < 20; t++) CK(cudaGraphLaunch(ge, st));
            cudaEventRecord(e1, st);
            CK(cudaEventSynchronize(e1));
            float ms;
            cudaEventElapsedTime(&ms, e0, e1);
            best = ms / 20 < best ? ms / 20 : best;
        }
        double gbs = nbytes / (best * 1e-3) / 1e9;
        printf("%-34s %8.1f us  %6.0f GB/s = %5.1f%% of 4280\n", label, best * 1e3 / (which.size() == mats.size() ? 1 : which.size()), gbs, 100 * gbs / 4280);
        cudaGraphExecDestroy(ge);
        cudaGraphDestroy(g);
        return 0;
    };
    std::vector<int> all(mats.size());
    for (size_t i = 0; i < mats.size(); i++) all[i] = (int)i;
    for (int mode = 0; mode < 4; mode++) {
        const bool pdl = mode & 1, cs = mode & 2;
        char label[64];
        const char* how = cs ? (pdl ? "PDL, streaming loads" : "plain, streaming loads") : (pdl ? "PDL" : "plain");
        snprintf(label, sizeof label, "whole step (us per step), %s", how);
        if (run_graph(all, pdl, cs, label, bytes)) return 1;
        const char* names[4] = {"qkv 6144x4096", "o_proj 4096x4096", "gate_up 24576x4096", "down 4096x12288"};
        for (int j = 0; j < 4; j++) {
            std::vector<int> same;
            double b = 0;
            for (int l = 0; l < L; l++) {
                same.push_back(4 * l + j);
                b += (double)mats[4 * l + j].rows * mats[4 * l + j].k * 34 / 32;
            }
            snprintf(label, sizeof label, "  %s, 36 in a row, %s", names[j], how);
            if (run_graph(same, pdl, cs, label, b)) return 1;
        }
    }
    return 0;
}
