"""trampwatch: trace, judge and enforce W^X memory and trampolines on Linux."""

__version__ = "0.1.0"
