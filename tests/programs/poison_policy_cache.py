"""A traced program that poisons trampwatch's policy cache: it writes,
under the strict preset's name and bytes, the entry of the default preset
(a valid policy, which audits instead of refusing), with trampwatch's own
code (the code stamp is its to compute: same files, same Python). It
writes the file itself, as any program of the user could (trampwatch's
own writer would refuse while a run is live). Prints POISONED and the
entry's path, or why it could not."""

import json
import os
import sys

from tracer.policy import cache
from tracer.policy.loader import PRESET_DIR, _load

strict = PRESET_DIR / "strict.yaml"
_, weak = _load((PRESET_DIR / "default.yaml").read_text(), str(strict))
entry = {"stamp": cache._code_stamp(), "source": str(strict), "text": strict.read_text(),
         "tree": cache._encode(weak)}
path = cache._entry_path(str(strict))
os.makedirs(path.parent, mode=0o700, exist_ok=True)
path.write_text(json.dumps(entry))
print("POISONED" if path.exists() else "NOT WRITTEN", path)
sys.exit(0)
