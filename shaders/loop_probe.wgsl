// Measures how many loop iterations one invocation may run on this adapter.
//
// llvmpipe (lavapipe) ends an invocation's loops after 65,535 iterations counted over all
// of its loops together, silently. This kernel runs one loop of up to p.limit iterations
// whose exit also depends on the data (an LCG reaching p.stop), so no compiler can replace
// the loop by its trip count; out[0] is the number of iterations that actually ran. The
// host replays the LCG to know how many should have.

struct ProbeParams {
    limit: u32,
    seed: u32,
    stop: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: ProbeParams;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(1)
fn loop_probe() {
    var x = p.seed;
    var count = 0u;
    loop {
        if count >= p.limit || x == p.stop {
            break;
        }
        x = x * 1664525u + 1013904223u;
        count += 1u;
    }
    out[0] = count;
    out[1] = x;
}
