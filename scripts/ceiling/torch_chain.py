"""What NVIDIA's own libraries reach on a batch-1 decode step's matrix chain (session 15).

Runs on the device machine's PyTorch (CUDA, cuBLAS), not in CI. One "step" is Qwen3-8B's 36
layers of four matrix-vector products (qkv, o_proj, gate_up, down) and the lm_head, each
output feeding the next input (no attention, norms or activations: an upper bound for a
whole step), captured once in a CUDA graph and replayed. Shapes:
  bf16    the real BF16 shapes (15.1 GB a step)
  q8eq    BF16 matrices with the Q8_0 step's bytes (K x 17/32 columns: 34 bytes per 32
          weights), i.e. the Q8_0 step's bytes per matrix and launch count
Prints ms per step, GB/s and the share of the read and copy rates measured in the same run.
"""
import sys
import torch

H, I, Q, KV, L, V = 4096, 12288, 4096, 1024, 36, 151936


def layer_shapes(scale):
    k = lambda n: (n * scale[0] // scale[1] + 63) // 64 * 64
    return [(Q + 2 * KV, k(H)), (H, k(Q)), (2 * I, k(H)), (H, k(I))]


def make_step(scale, dtype=torch.bfloat16):
    mats = []
    for _ in range(L):
        for rows, cols in layer_shapes(scale):
            mats.append(torch.randn(rows, cols, device="cuda", dtype=dtype) * cols**-0.5)
    cols = (H * scale[0] // scale[1] + 63) // 64 * 64
    mats.append(torch.randn(V, cols, device="cuda", dtype=dtype) * cols**-0.5)
    x0 = torch.randn(mats[0].shape[1], device="cuda", dtype=dtype)
    outs = [torch.empty(m.shape[0], device="cuda", dtype=dtype) for m in mats]

    def step():
        # each product's input is the previous output's first K values (a view, no copy
        # kernel), so every launch waits for the one before, as in a decode step
        prev = x0
        for m, o in zip(mats, outs):
            torch.mv(m, prev[: m.shape[1]], out=o)
            prev = o

    step_plain = step
    nbytes = sum(m.numel() * m.element_size() for m in mats)
    return step_plain, nbytes, mats


def timed(fn, reps):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(5):
        s.record()
        for _ in range(reps):
            fn()
        e.record()
        torch.cuda.synchronize()
        best = min(best, s.elapsed_time(e) / reps)
    return best  # ms


def rates():
    n = 1 << 30
    a = torch.empty(n, device="cuda", dtype=torch.uint8)
    b = torch.empty_like(a)
    a.random_(0, 255)
    copy = 2 * n / (timed(lambda: b.copy_(a), 20) * 1e-3) / 1e9
    f = a.view(torch.float32)
    read = n / (timed(lambda: f.sum(), 20) * 1e-3) / 1e9
    return copy, read


def main():
    print(torch.cuda.get_device_name(), torch.__version__, "cuda", torch.version.cuda)
    copy, read = rates()
    print(f"copy (read + write) {copy:.0f} GB/s, read (sum) {read:.0f} GB/s")
    for name, scale in (("bf16", (1, 1)), ("q8eq", (17, 32))):
        step, nbytes, mats = make_step(scale)
        plain = timed(step, 3)
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            step()
        torch.cuda.current_stream().wait_stream(s)
        with torch.cuda.graph(g):
            step()
        graph = timed(g.replay, 20)
        for label, ms in (("launches", plain), ("CUDA graph", graph)):
            gbs = nbytes / (ms * 1e-3) / 1e9
            print(f"{name} {label}: {nbytes / 1e9:.2f} GB, {ms:.3f} ms/step = {1e3 / ms:.1f} steps/s, "
                  f"{gbs:.0f} GB/s = {100 * gbs / 4280:.1f}% of 4280, {100 * gbs / read:.1f}% of read {read:.0f}")
        # one shape at a time: its 36 matrices (other layers' copies, so nothing is read
        # from L2) in one graph, back to back
        for j in range(4):
            same = mats[j::4][:L]
            x = torch.randn(same[0].shape[1], device="cuda", dtype=same[0].dtype)
            o = torch.empty(same[0].shape[0], device="cuda", dtype=same[0].dtype)
            gm = torch.cuda.CUDAGraph()
            with torch.cuda.stream(s):
                torch.mv(same[0], x, out=o)
            torch.cuda.synchronize()
            with torch.cuda.graph(gm):
                for m in same:
                    torch.mv(m, x, out=o)
            us = timed(gm.replay, 5) * 1e3 / len(same)
            mb = same[0].numel() * same[0].element_size() / 1e6
            print(f"  {name} {tuple(same[0].shape)} {mb:.1f} MB: {us:.1f} us = {mb / us * 1e3:.0f} GB/s")
        del mats, g
        torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
