"""casyncio's benchmark suite: ``python -m benchmarks --help``.

Every workload runs on every loop (casyncio, stock asyncio, uvloop, and any
other asyncio loop installed), each measurement in a fresh process, loops
interleaved round by round; the report gives medians, spreads and the ratio
of each peer to casyncio.
"""
