#!/usr/bin/env python3
"""Instructions per request on the middleware's path, from two callgrind runs.

Usage (BENCHMARKS.md, "Middleware"): run a benchmark under callgrind with
-test.benchtime 20000x and 60000x, then

    python3 testdata/cgpath.py /tmp/cg.20000.out /tmp/cg.60000.out [top]

It prints (self cost at 60000x - self cost at 20000x) / 40000, summed over
the functions a request runs (this module, SHA-256, allocation, maps, time,
strings, net/http's Request/Header/HandlerFunc, httptest, otel's global
instruments), and with [top] the largest of them. The scheduler, the
collector, timers and the idle servers of the test network are left out: on
a shared machine they move the whole-process difference by thousands of
instructions per request.
"""
import re
import subprocess
import sys

PATH = re.compile(
    r":(github\.com/agentpass-go/|crypto/sha256\.|crypto/internal/fips140/sha256\.|"
    r"crypto/internal/fips140\.RecordApproved|go\.opentelemetry\.io/otel/internal/global\.\(\*si|"
    r"runtime\.(mallocgc|newobject|makeslice|memmove|memclr|nextFreeFast|\(\*mspan\)\.writeHeapBitsSmall|"
    r"\(\*mcache\)\.nextFree|\(\*mcache\)\.refill|memequal|ifaceeq|efaceeq|mapaccess|makemap|mapIter|rand|"
    r"wbMove|typedmemmove|gcWriteBarrier|bulkBarrierPreWrite|heapSetType|mapassign|publicationBarrier|"
    r"deductAssistCredit)|memeqbody|aeshashbody|indexbytebody|cmpbody|internal/runtime/maps\.|"
    r"internal/chacha8rand\.|time\.|strings\.|internal/stringslite\.|internal/bytealg\.|"
    r"net/http\.\(\*Request\)|net/http\.HandlerFunc|net/http\.Header|net/http/httptest\.|"
    r"sync\.\(\*Mutex\)|internal/sync\.|sync/atomic\.|context\.)")


def self_costs(path):
    out = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    costs = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)$", line)
        if m and "PROGRAM TOTALS" not in m.group(2):
            name = m.group(2).split(" [")[0]
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def main():
    short, long = self_costs(sys.argv[1]), self_costs(sys.argv[2])
    rows = sorted(((long.get(k, 0) - short.get(k, 0)) / 40000, k)
                  for k in set(short) | set(long) if PATH.search(k))
    print("%.0f instructions per request on the path" % sum(v for v, _ in rows))
    for v, k in reversed(rows[-int(sys.argv[3]):] if len(sys.argv) > 3 else []):
        print("%8.1f %s" % (v, k.split(":", 1)[-1]))


if __name__ == "__main__":
    main()
