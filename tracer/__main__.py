"""`python -m tracer` is the trampwatch command."""

from .cli import main

main()
