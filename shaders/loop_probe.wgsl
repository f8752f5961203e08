// Measures how many loop iterations one invocation may run on this adapter.
//
// llvmpipe (lavapipe) ends an invocation's loops after 65,535 iterations counted over all
// of its loops together, silently. This kernel runs one loop of up to p.limit iterations
// whose exit also depends on the data (an LCG reaching p.stop), so no compiler can replace
// the loop by its trip count; out[0] is the number of iterations that actually ran. The
// host replays the LCG to know how many should have.

// Every lane runs the same loop; lane 0 reports. (WG is 1 when the device opens; it is an
// override like every kernel's so that one test translates all shaders alike.)
override WG: u32 = 1u;

struct ProbeParams {
    limit: u32,
    seed: u32,
    stop: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: ProbeParams;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(WG)
fn loop_probe(@builtin(local_invocation_index) lid: u32) {
    var x = p.seed;
    var count = 0u;
    loop {
        if count >= p.limit || x == p.stop {
            break;
        }
        x = x * 1664525u + 1013904223u;
        count += 1u;
    }
    if lid == 0u {
        out[0] = count;
        out[1] = x;
    }
}
