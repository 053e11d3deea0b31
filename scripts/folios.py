#!/usr/bin/env python3
"""Folio sizes of a file's page cache, as the kernel holds it now (run as root).

    sudo scripts/folios.py FILE...

Maps each FILE read-only, touches every page (a read of one byte: pages already cached send
no request to a FUSE daemon, missing ones are read in), finds each page's frame in
/proc/self/pagemap and its flags in /proc/kpageflags (bit 16, COMPOUND_TAIL: the page
continues the folio of the page before it; Documentation/admin-guide/mm/pagemap.rst), and
prints the number of pages, of folios, and a histogram "<pages per folio>p x<count>".
Used by scripts/bench.sh (row seq_fuse) and README "First look: reads": the warm sequential
read of a file costs about one page cache lookup per folio, so this says why a FUSE file's
cache is slower to read than the container's own file's with the same bytes.
"""
import collections
import ctypes
import os
import struct
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")
TAIL = 1 << 16
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def folios(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        n = size // PAGE
        if n == 0:
            return 0, collections.Counter()
        addr = libc.mmap(None, n * PAGE, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        try:
            mem = (ctypes.c_char * (n * PAGE)).from_address(addr)
            for i in range(n):
                mem[i * PAGE]
            with open("/proc/self/pagemap", "rb", buffering=0) as pm, \
                 open("/proc/kpageflags", "rb", buffering=0) as kf:
                pm.seek(addr // PAGE * 8)
                entries = struct.unpack(f"{n}Q", pm.read(8 * n))
                hist, cur = collections.Counter(), 0
                for e in entries:
                    if not e >> 63:  # not present
                        if cur:
                            hist[cur] += 1
                        cur = 0
                        continue
                    kf.seek((e & ((1 << 55) - 1)) * 8)
                    if struct.unpack("Q", kf.read(8))[0] & TAIL and cur:
                        cur += 1
                    else:
                        if cur:
                            hist[cur] += 1
                        cur = 1
                if cur:
                    hist[cur] += 1
        finally:
            libc.munmap(addr, n * PAGE)
        return n, hist
    finally:
        os.close(fd)


for p in sys.argv[1:]:
    n, hist = folios(p)
    print(f"{p}: {n} pages in {sum(hist.values())} folios:",
          " ".join(f"{k}p x{v}" for k, v in sorted(hist.items())))
