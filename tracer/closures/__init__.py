"""Closures without writable code: the pure half of `run --closures`.

`patterns` recognises the trampolines programs write (GCC nested functions,
libffi closures) from their bytes and says what running them would do to
the registers; `regions` keeps the memory the emulator granted without
PROT_EXEC. No ptrace here: tracer/actions/closures.py applies both to a
traced program, and tracer/closures/preload.py builds the LD_PRELOAD library
of trampfd mode. docs/closures.md describes the modes.
"""
