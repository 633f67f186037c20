// The workgroup's best (value, index) pair: a tree over best_v / best_i (the including shader
// declares them, 256 each, and fills them first), the larger value or, on ties, the lower
// index (NaN never wins). Every invocation calls it (it has barriers); slot 0 holds the result.
fn best_of_workgroup(li: u32) {
    workgroupBarrier();
    var s = 128u;
    loop {
        if (s == 0u) { break; }
        if (li < s) {
            let ov = best_v[li + s];
            let oi = best_i[li + s];
            if (ov > best_v[li] || (ov == best_v[li] && oi < best_i[li])) {
                best_v[li] = ov;
                best_i[li] = oi;
            }
        }
        workgroupBarrier();
        s = s / 2u;
    }
}
