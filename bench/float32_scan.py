"""Exhaustive scan: which float32 values does shortest-decimal -> float64 -> float32 change?

Run: python bench/float32_scan.py  (about 4 minutes; writes bad_f32.npy). Result 2026-11-21:
exactly one positive pattern, 363742205 (7.038531e-26); see vexchange/_floats.py.
"""
import numpy as np
import orjson
import time
t = time.time()
bads = []
step = 1 << 24
for start in range(0, 1 << 31, step):
    bits = np.arange(start, start + step, dtype=np.uint32)
    f = bits.view(np.float32)
    f = f[np.isfinite(f)]
    back = np.array(orjson.loads(orjson.dumps(f, option=orjson.OPT_SERIALIZE_NUMPY)), dtype=np.float32)
    m = back.view(np.uint32) != f.view(np.uint32)
    bads.append(f.view(np.uint32)[m])
    if start % (1 << 28) == 0:
        print(start, sum(len(b) for b in bads), time.time() - t, flush=True)
allbad = np.concatenate(bads)
np.save("bad_f32.npy", allbad)
print("done bad=", len(allbad), "secs", time.time() - t, flush=True)
