#!/usr/bin/env python3
"""Reads the JSON files scripts/compare-peers wrote and prints ours / peer per figure (peer = mean of the medians of
its runs before and after ours). A GPUBridge figure whose result did not check out ("verified": false) is never
reported as a ratio: it is listed as UNVERIFIED and the script exits 1. Figures with nothing to check (no "verified")
are marked as such. A peer figure whose own result did not check out is not used either (listed, not fatal).
Ratios are oriented so that above 1 means ours is better: ours / peer for rates, peer / ours for times (µs, ms).
Usage: ratios.py FOLDER [OUT.json]"""
import glob
import json
import os
import sys

folder = sys.argv[1]
ours, peers, missing = [], {}, []
peer_units, peer_unverified = {}, []
unreadable = []
for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
    try:
        data = json.load(open(path))
    except ValueError as error:
        unreadable.append(f"{os.path.basename(path)}: {error}")
        continue
    if isinstance(data, list):
        ours.extend(data)
    elif not data.get("available", False):
        missing.append(f"{data['peer']}: {data.get('reason', 'unavailable')}")
    else:
        for f in data["figures"]:
            if f.get("verified") is False:  # the peer's own result did not check out: not a reference
                peer_unverified.append(f"{f['peer']} {f['suite']} {f['name']}")
                continue
            peers.setdefault((f["peer"], f["suite"], f["name"]), []).append(f["median"])
            peer_units[(f["peer"], f["suite"], f["name"])] = f["unit"]

def ours_for(backend, suite, name):
    for f in ours:
        if f["device"].startswith(backend) and f["suite"] == suite and f["name"] == name:
            return f
    return None

rows, unverified = [], []

def checked(f):
    """True when the figure may be reported; an unverified one is recorded instead."""
    if f.get("verified") is False:
        unverified.append(f"{f['suite']} {f['name']} ({f['device']})")
        return False
    return True

def check_mark(f):
    return "" if f.get("verified") is True else " (no result check)"

def compare(backend, suite, name, peer, peer_name=None, lower_is_better=False, label=None, peer_suite=None):
    mine = ours_for(backend, suite, name)
    theirs = peers.get((peer, peer_suite or suite, peer_name or name))
    if mine is None or not theirs:
        return
    if not checked(mine):
        return
    if peer_units.get((peer, peer_suite or suite, peer_name or name)) != mine["unit"]:
        return
    ref = sum(theirs) / len(theirs)
    ratio = (ref / mine["median"]) if lower_is_better else (mine["median"] / ref)
    rows.append({"figure": (label or f"{suite} {name}") + check_mark(mine),
                 "ours": f"{backend} {mine['median']:.4g} {mine['unit']}",
                 "peer": f"{peer} {ref:.4g} {mine['unit']}", "ratio": ratio})

for t in ("float", "double"):
    for k in ("copy", "mul", "add", "triad", "dot"):
        compare("cpu", "stream", f"{k} {t}", "numpy", label=f"stream {k} {t}: CPU backend vs numpy same op")
        compare("cpu", "stream", f"{k} {t}", "numpy", peer_name=f"add {t}", label=f"stream {k} {t}: CPU backend vs numpy c=a+b")
        compare("opencl", "stream", f"{k} {t}", "numpy", peer_name=f"add {t}", label=f"stream {k} {t}: OpenCL vs numpy c=a+b")
        compare("opencl", "stream", f"{k} {t}", "pyopencl", label=f"stream {k} {t}: OpenCL vs pyopencl")
# The machine's memory roof (C + OpenMP on every core) against the CPU backend's kernels and the README's kernel.
for k in ("copy", "add", "triad"):
    compare("cpu", "stream", f"{k} float", "c-stream", label=f"stream {k} float: CPU backend vs C + OpenMP (the roof)")
compare("cpu", "stream", "add float, README kernel", "c-stream", peer_name="add float",
        label="stream add float, the README's kernel: CPU backend vs C + OpenMP add")
compare("cpu", "stream", "add float, README kernel", "numpy", peer_name="add float",
        label="stream add float, the README's kernel: CPU backend vs numpy c=a+b")
# gpubridge run vector-add phase by phase (copy in, launch, copy out) against the roof's add.
for phase in ("copy-in", "launch", "copy-out"):
    compare("cpu", "memory", f"vector-add {phase}", "c-stream", peer_name="add float", peer_suite="stream",
            label=f"run vector-add {phase}: CPU backend vs C + OpenMP add")
# The copy out reads the result back into a host array that exists: the peer is the C + OpenMP copy.
compare("cpu", "memory", "vector-add copy-out", "c-stream", peer_name="copy float", peer_suite="stream",
        label="run vector-add copy-out: CPU backend vs C + OpenMP copy")
compare("opencl", "launch", "launch+wait", "pyopencl", lower_is_better=True, label="launch+wait: OpenCL vs pyopencl (higher is better)")
compare("opencl", "launch", "queued launches", "pyopencl", label="queued launches/s: OpenCL vs pyopencl")
compare("cuda", "stream", "triad float", "pytorch", peer_name="copy float", label="triad float32: CUDA vs PyTorch device copy")
compare("cuda", "stream", "add float", "pytorch", label="add float32: CUDA vs torch.add")
compare("cuda", "launch", "launch+wait", "cupy", lower_is_better=True, label="launch+sync: CUDA vs CuPy RawKernel (higher is better)")

# bench kernels --backend cpu (end to end: upload, launch, download) against numpy on arrays already in memory.
for f in ours:
    if f["suite"] == "kernels" and f["device"].startswith("cpu"):
        if f["name"].endswith(", resident"):
            # Inputs already in device memory against numpy on arrays in memory: the kernels alone.
            compare("cpu", "kernels", f["name"], "numpy", peer_name=f["name"][: -len(", resident")],
                    label=f"kernels {f['name']}: CPU vs numpy in memory")
        else:
            compare("cpu", "kernels", f["name"], "numpy", label=f"kernels {f['name']}: CPU e2e vs numpy in memory")

# bench cluster, plaintext: our remote actor call against a Ray actor call, our plain grpc-swift unary echo against
# a grpcio unary echo (the transport floor), for the same figure names: 64 B and large round trips, 32 in flight.
for f in list(ours):
    if f["suite"] != "cluster" or f["device"] != "plaintext" or f["unit"] == "x":
        continue
    times = f["unit"] in ("µs", "ms")
    # The actor figures over the TCP transport ("remote actor call over TCP, ...") compare with the same Ray figure.
    tcp = " over TCP" in f["name"]
    plain_name = f["name"].replace(" over TCP", "")
    what = plain_name.replace("remote actor call, echo ", "actor round trip ").replace(
        "plain gRPC unary, echo ", "gRPC round trip ").replace("remote actor calls, ", "actor calls/s ").replace(
        "plain gRPC unary, ", "gRPC calls/s ")
    if f["name"].startswith("remote actor"):
        compare("plaintext", "cluster", f["name"], "ray", peer_name=plain_name, lower_is_better=times,
                label=f"cluster {what}: actor{' over TCP' if tcp else ' over gRPC'} vs Ray actor")
    elif f["name"].startswith("plain gRPC"):
        compare("plaintext", "cluster", f["name"], "grpcio", lower_is_better=times,
                label=f"cluster {what}: grpc-swift vs grpcio")

for f in ours:
    if f["suite"] == "alloc" and f["name"].startswith("raw / pooled") and checked(f):
        rows.append({"figure": f"alloc {f['name']} ({f['device']})", "ours": f"{f['median']:.3g}x", "peer": "raw backend call", "ratio": f["median"]})
    # Our own actor layer over our plain gRPC, measured in the same bench run (a time ratio: below 1.20 is the target;
    # the calls/s one: above 0.83); shown as it is, not inverted.
    if f["suite"] == "cluster" and f["unit"] == "x" and checked(f):
        rows.append({"figure": f"cluster {f['name']} ({f['device']}, same run)", "ours": f"{f['median']:.3g}x",
                     "peer": "grpc-swift unary", "ratio": f["median"]})

width = max([62] + [len(r["figure"]) for r in rows])
print("ratio above 1: ours better (ours / peer for rates, peer / ours for times); 'same run' rows: ours / ours")
print(f"{'figure':<{width}} {'ours':<26} {'peer':<26} ratio")
for r in rows:
    print(f"{r['figure']:<{width}} {r['ours']:<26} {r['peer']:<26} {r['ratio']:.2f}")
for m in missing:
    print(f"peer unavailable: {m}")
for p in peer_unverified:
    print(f"peer figure not used (the peer's own result did not check out): {p}")
# Every unverified figure of ours, compared or not, is a failure.
for f in ours:
    if f.get("verified") is False and f"{f['suite']} {f['name']} ({f['device']})" not in unverified:
        unverified.append(f"{f['suite']} {f['name']} ({f['device']})")
for u in unverified:
    print(f"UNVERIFIED (result differs from the host; no ratio reported): {u}")
for u in unreadable:
    print(f"UNREADABLE result file: {u}")
if len(sys.argv) > 2:
    json.dump({"rows": rows, "unavailable": missing, "unverified": unverified, "unreadable": unreadable,
               "peer_unverified": peer_unverified, "ours": ours,
               "peers": {" / ".join(k): v for k, v in peers.items()}},
              open(sys.argv[2], "w"), indent=2)
if unverified or unreadable:
    sys.exit(1)
