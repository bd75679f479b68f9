"""training/allocator.py: after ``keep_freed_memory`` a large block comes from the heap and
stays there when freed, where glibc's defaults map it and unmap it (fresh processes: the
setting is process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = '''
import ctypes, json, sys
from training.allocator import keep_freed_memory

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks',
        'fordblks', 'keepcost')]

try:
    libc = ctypes.CDLL('libc.so.6')
    libc.mallinfo2.restype = Mallinfo2
except (OSError, AttributeError):  # not glibc (2.33 or later)
    print(json.dumps({'glibc': False, 'set': keep_freed_memory()}))
    sys.exit()
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)

def block(size):
    """Bytes mapped for a block of ``size``, and free heap bytes kept once it is freed."""
    before = libc.mallinfo2().hblkhd
    pointer = libc.malloc(size)
    mapped = libc.mallinfo2().hblkhd - before
    libc.free(pointer)
    return {'mapped': mapped, 'kept': libc.mallinfo2().fordblks}

size = 64 << 20  # above glibc's largest automatic threshold (32 MiB)
if sys.argv[1] == 'kept':
    print(json.dumps({'glibc': True, 'set': keep_freed_memory(), **block(size)}))
else:
    print(json.dumps({'glibc': True, **block(size)}))
'''


def probe(mode: str) -> dict:
    done = subprocess.run([sys.executable, '-c', PROBE, mode], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout)


def test_freed_blocks_stay_in_the_heap_after_keep_freed_memory():
    default, kept = probe('default'), probe('kept')
    if not kept['glibc']:  # another C library keeps its own behaviour, and says so
        assert kept['set'] is False
        return
    size = 64 << 20
    assert default['mapped'] >= size  # glibc's default: its own mapping, unmapped on free
    assert default['kept'] < size
    assert kept['set'] is True
    assert kept['mapped'] == 0  # from the heap
    assert kept['kept'] >= size  # and kept there for the next step
