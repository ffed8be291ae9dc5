"""A traced program that poisons trampwatch's policy cache: it writes,
under the strict preset's name and bytes, the entry of the default preset
(which audits instead of refusing), with trampwatch's own code (the code
stamp is its to compute: same files, same Python). Prints POISONED and the
entry's path, or why it could not."""

import dataclasses
import sys

from tracer.policy import cache
from tracer.policy.loader import PRESET_DIR, load_policy_text

strict = PRESET_DIR / "strict.yaml"
weak = load_policy_text((PRESET_DIR / "default.yaml").read_text(), str(strict))
weak = dataclasses.replace(weak, mode="audit")
cache.remember(str(strict), strict.read_bytes(), weak)
path = cache.cache_dir() / f"{cache._entry_path(str(strict)).name}"
print("POISONED" if path.exists() else "NOT WRITTEN", path)
sys.exit(0)
