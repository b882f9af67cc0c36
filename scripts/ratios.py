#!/usr/bin/env python3
"""Reads the JSON files scripts/compare-peers wrote and prints ours / peer per figure (peer = mean of the medians of
its runs before and after ours). A GPUBridge figure whose result did not check out ("verified": false) is never
reported as a ratio: it is listed as UNVERIFIED and the script exits 1. Figures with nothing to check (no "verified")
are marked as such. Usage: ratios.py FOLDER [OUT.json]"""
import glob
import json
import os
import sys

folder = sys.argv[1]
ours, peers, missing = [], {}, []
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
            peers.setdefault((f["peer"], f["suite"], f["name"]), []).append(f["median"])

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

def compare(backend, suite, name, peer, peer_name=None, lower_is_better=False, label=None):
    mine = ours_for(backend, suite, name)
    theirs = peers.get((peer, suite, peer_name or name))
    if mine is None or not theirs:
        return
    if not checked(mine):
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
compare("opencl", "launch", "launch+wait", "pyopencl", lower_is_better=True, label="launch+wait: OpenCL vs pyopencl (higher is better)")
compare("opencl", "launch", "queued launches", "pyopencl", label="queued launches/s: OpenCL vs pyopencl")
compare("cuda", "stream", "triad float", "pytorch", peer_name="copy float", label="triad float32: CUDA vs PyTorch device copy")
compare("cuda", "stream", "add float", "pytorch", label="add float32: CUDA vs torch.add")
compare("cuda", "launch", "launch+wait", "cupy", lower_is_better=True, label="launch+sync: CUDA vs CuPy RawKernel (higher is better)")

for f in ours:
    if f["suite"] == "alloc" and f["name"].startswith("raw / pooled") and checked(f):
        rows.append({"figure": f"alloc {f['name']} ({f['device']})", "ours": f"{f['median']:.3g}x", "peer": "raw backend call", "ratio": f["median"]})

print(f"{'figure':<62} {'ours':<26} {'peer':<26} ratio")
for r in rows:
    print(f"{r['figure']:<62} {r['ours']:<26} {r['peer']:<26} {r['ratio']:.2f}")
for m in missing:
    print(f"peer unavailable: {m}")
# Every unverified figure of ours, compared or not, is a failure.
for f in ours:
    if f.get("verified") is False and f"{f['suite']} {f['name']} ({f['device']})" not in unverified:
        unverified.append(f"{f['suite']} {f['name']} ({f['device']})")
for u in unverified:
    print(f"UNVERIFIED (result differs from the host; no ratio reported): {u}")
for u in unreadable:
    print(f"UNREADABLE result file: {u}")
if len(sys.argv) > 2:
    json.dump({"rows": rows, "unavailable": missing, "unverified": unverified, "unreadable": unreadable, "ours": ours,
               "peers": {" / ".join(k): v for k, v in peers.items()}},
              open(sys.argv[2], "w"), indent=2)
if unverified or unreadable:
    sys.exit(1)
